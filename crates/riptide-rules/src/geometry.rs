//! `st_asgeojson`, `st_astext`, `st_x`, `st_y` over PostGIS geometry values: (E)WKB, as the
//! hex text a `geometry` column replicates as, or as a blob.
//!
//! Reads little- and big-endian WKB, PostGIS EWKB (SRID, Z and M flags) and ISO WKB type codes
//! (1000 + n for Z, 2000 + n for M, 3000 + n for ZM), for points, line strings, polygons,
//! their multi forms and collections. Anything else (curves, truncated or trailing bytes,
//! nesting deeper than [`MAX_DEPTH`]) gives NULL, as does a non-geometry argument. Output:
//! WKT as PostGIS/`wkx` print it (`POINT(1 2)`, `POINT Z (1 2 3)`, `LINESTRING EMPTY`) and
//! GeoJSON (`{"type":"Point","coordinates":[1,2]}`, Z kept, M dropped), numbers written as
//! JavaScript does.

use crate::SqliteValue;

/// Deepest nesting of geometry collections read.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
enum Geometry {
    Point(Option<Vec<f64>>),
    LineString(Vec<Vec<f64>>),
    Polygon(Vec<Vec<Vec<f64>>>),
    MultiPoint(Vec<Option<Vec<f64>>>),
    MultiLineString(Vec<Vec<Vec<f64>>>),
    MultiPolygon(Vec<Vec<Vec<Vec<f64>>>>),
    Collection(Vec<Geometry>),
}

/// Which of Z and M a geometry's coordinates carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dims {
    z: bool,
    m: bool,
}

impl Dims {
    fn count(self) -> usize {
        2 + usize::from(self.z) + usize::from(self.m)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.at.checked_add(N)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        slice.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self, little: bool) -> Option<u32> {
        let b = self.take::<4>()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, little: bool) -> Option<f64> {
        let b = self.take::<8>()?;
        Some(if little {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    /// A count of items of at least `min_size` bytes each: never more than the bytes left
    /// could hold (so a forged count allocates nothing).
    fn count(&mut self, little: bool, min_size: usize) -> Option<usize> {
        let n = usize::try_from(self.u32(little)?).ok()?;
        (n.checked_mul(min_size)? <= self.remaining()).then_some(n)
    }

    fn coordinate(&mut self, little: bool, dims: Dims) -> Option<Vec<f64>> {
        (0..dims.count()).map(|_| self.f64(little)).collect()
    }

    fn points(&mut self, little: bool, dims: Dims) -> Option<Vec<Vec<f64>>> {
        let n = self.count(little, dims.count() * 8)?;
        (0..n).map(|_| self.coordinate(little, dims)).collect()
    }

    fn rings(&mut self, little: bool, dims: Dims) -> Option<Vec<Vec<Vec<f64>>>> {
        let n = self.count(little, 4)?;
        (0..n).map(|_| self.points(little, dims)).collect()
    }

    /// One (E)WKB geometry; the dimensions of all of it.
    fn geometry(&mut self, depth: usize) -> Option<(Geometry, Dims)> {
        if depth > MAX_DEPTH {
            return None;
        }
        let little = match self.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let raw = self.u32(little)?;
        let mut dims = Dims {
            z: raw & 0x8000_0000 != 0,
            m: raw & 0x4000_0000 != 0,
        };
        if raw & 0x2000_0000 != 0 {
            // EWKB SRID: not part of WKT or (default) GeoJSON output.
            self.u32(little)?;
        }
        let code = raw & 0x0fff_ffff;
        let (kind, iso) = (code % 1000, code / 1000);
        match iso {
            0 => {}
            1 => dims.z = true,
            2 => dims.m = true,
            3 => (dims.z, dims.m) = (true, true),
            _ => return None,
        }
        let geometry = match kind {
            1 => {
                let c = self.coordinate(little, dims)?;
                // WKB writes an empty point as NaN coordinates.
                Geometry::Point((!c.iter().take(2).all(|v| v.is_nan())).then_some(c))
            }
            2 => Geometry::LineString(self.points(little, dims)?),
            3 => Geometry::Polygon(self.rings(little, dims)?),
            4..=7 => {
                let n = self.count(little, 5)?;
                let mut parts = Vec::new();
                for _ in 0..n {
                    parts.push(self.geometry(depth + 1)?.0);
                }
                match kind {
                    4 => Geometry::MultiPoint(
                        parts
                            .into_iter()
                            .map(|g| match g {
                                Geometry::Point(p) => Some(p),
                                _ => None,
                            })
                            .collect::<Option<_>>()?,
                    ),
                    5 => Geometry::MultiLineString(
                        parts
                            .into_iter()
                            .map(|g| match g {
                                Geometry::LineString(l) => Some(l),
                                _ => None,
                            })
                            .collect::<Option<_>>()?,
                    ),
                    6 => Geometry::MultiPolygon(
                        parts
                            .into_iter()
                            .map(|g| match g {
                                Geometry::Polygon(p) => Some(p),
                                _ => None,
                            })
                            .collect::<Option<_>>()?,
                    ),
                    _ => Geometry::Collection(parts),
                }
            }
            _ => return None,
        };
        Some((geometry, dims))
    }
}

/// The geometry of a hex-text or blob value, or `None`.
fn parse(value: &SqliteValue) -> Option<(Geometry, Dims)> {
    let decoded;
    let bytes: &[u8] = match value {
        SqliteValue::Blob(b) => b,
        SqliteValue::Text(t) => {
            decoded = hex::decode(t.trim()).ok()?;
            &decoded
        }
        _ => return None,
    };
    let mut reader = Reader { bytes, at: 0 };
    let geometry = reader.geometry(0)?;
    (reader.remaining() == 0).then_some(geometry)
}

/// A number as JavaScript's `String(n)` / `JSON.stringify` write it (`1`, `1.5`, `1e+21`);
/// non-finite numbers as `null` in JSON (`json`) or `NaN`/`Infinity` in WKT.
fn js_number(out: &mut String, f: f64, json: bool) {
    if !f.is_finite() {
        out.push_str(match (json, f.is_nan(), f > 0.0) {
            (true, _, _) => "null",
            (false, true, _) => "NaN",
            (false, false, true) => "Infinity",
            (false, false, false) => "-Infinity",
        });
        return;
    }
    if f == 0.0 {
        out.push('0');
        return;
    }
    let abs = f.abs();
    if (1e-6..1e21).contains(&abs) {
        out.push_str(&f.to_string());
    } else {
        // Rust writes `1e-7` / `1.5e21`; JavaScript `1e-7` / `1.5e+21`.
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => {
                out.push_str(mantissa);
                out.push_str("e+");
                out.push_str(exp);
            }
            _ => out.push_str(&s),
        }
    }
}

fn wkt_coordinate(out: &mut String, c: &[f64]) {
    for (i, v) in c.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        js_number(out, *v, false);
    }
}

fn wkt_points(out: &mut String, points: &[Vec<f64>]) {
    out.push('(');
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        wkt_coordinate(out, p);
    }
    out.push(')');
}

fn wkt_rings(out: &mut String, rings: &[Vec<Vec<f64>>]) {
    out.push('(');
    for (i, r) in rings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        wkt_points(out, r);
    }
    out.push(')');
}

fn wkt(out: &mut String, g: &Geometry, dims: Dims) {
    let (name, empty) = match g {
        Geometry::Point(p) => ("POINT", p.is_none()),
        Geometry::LineString(l) => ("LINESTRING", l.is_empty()),
        Geometry::Polygon(p) => ("POLYGON", p.is_empty()),
        Geometry::MultiPoint(p) => ("MULTIPOINT", p.is_empty()),
        Geometry::MultiLineString(l) => ("MULTILINESTRING", l.is_empty()),
        Geometry::MultiPolygon(p) => ("MULTIPOLYGON", p.is_empty()),
        Geometry::Collection(c) => ("GEOMETRYCOLLECTION", c.is_empty()),
    };
    out.push_str(name);
    match (dims.z, dims.m) {
        (true, true) => out.push_str(" ZM "),
        (true, false) => out.push_str(" Z "),
        (false, true) => out.push_str(" M "),
        (false, false) if empty => out.push(' '),
        (false, false) => {}
    }
    if empty {
        out.push_str("EMPTY");
        return;
    }
    match g {
        Geometry::Point(Some(c)) => {
            out.push('(');
            wkt_coordinate(out, c);
            out.push(')');
        }
        Geometry::Point(None) => {}
        Geometry::LineString(l) => wkt_points(out, l),
        Geometry::Polygon(p) => wkt_rings(out, p),
        Geometry::MultiPoint(points) => {
            let points: Vec<Vec<f64>> = points.iter().flatten().cloned().collect();
            wkt_points(out, &points);
        }
        Geometry::MultiLineString(l) => wkt_rings(out, l),
        Geometry::MultiPolygon(polygons) => {
            out.push('(');
            for (i, p) in polygons.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                wkt_rings(out, p);
            }
            out.push(')');
        }
        Geometry::Collection(parts) => {
            out.push('(');
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                wkt(out, part, dims);
            }
            out.push(')');
        }
    }
}

/// GeoJSON positions keep x, y and z (not m).
fn json_position(out: &mut String, c: &[f64], dims: Dims) {
    out.push('[');
    let n = if dims.z { 3 } else { 2 };
    for (i, v) in c.iter().take(n).enumerate() {
        if i > 0 {
            out.push(',');
        }
        js_number(out, *v, true);
    }
    out.push(']');
}

fn json_list<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
    out.push(']');
}

fn geojson(out: &mut String, g: &Geometry, dims: Dims) {
    let pos = |out: &mut String, c: &Vec<f64>| json_position(out, c, dims);
    let line = |out: &mut String, l: &Vec<Vec<f64>>| json_list(out, l, pos);
    let polygon = |out: &mut String, p: &Vec<Vec<Vec<f64>>>| json_list(out, p, line);
    let name = match g {
        Geometry::Point(_) => "Point",
        Geometry::LineString(_) => "LineString",
        Geometry::Polygon(_) => "Polygon",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::MultiPolygon(_) => "MultiPolygon",
        Geometry::Collection(_) => "GeometryCollection",
    };
    out.push_str(r#"{"type":""#);
    out.push_str(name);
    if let Geometry::Collection(parts) = g {
        out.push_str(r#"","geometries":"#);
        json_list(out, parts, |out, part| geojson(out, part, dims));
        out.push('}');
        return;
    }
    out.push_str(r#"","coordinates":"#);
    match g {
        Geometry::Point(Some(c)) => pos(out, c),
        Geometry::Point(None) => out.push_str("[]"),
        Geometry::LineString(l) => line(out, l),
        Geometry::Polygon(p) => polygon(out, p),
        Geometry::MultiPoint(points) => {
            let points: Vec<Vec<f64>> = points.iter().flatten().cloned().collect();
            line(out, &points);
        }
        Geometry::MultiLineString(l) => polygon(out, l),
        Geometry::MultiPolygon(p) => json_list(out, p, polygon),
        Geometry::Collection(_) => {}
    }
    out.push('}');
}

/// `st_astext(geometry)`: WKT text.
pub(crate) fn st_astext(value: &SqliteValue) -> SqliteValue {
    parse(value).map_or(SqliteValue::Null, |(g, dims)| {
        let mut out = String::new();
        wkt(&mut out, &g, dims);
        SqliteValue::Text(out)
    })
}

/// `st_asgeojson(geometry)`: GeoJSON text.
pub(crate) fn st_asgeojson(value: &SqliteValue) -> SqliteValue {
    parse(value).map_or(SqliteValue::Null, |(g, dims)| {
        let mut out = String::new();
        geojson(&mut out, &g, dims);
        SqliteValue::Text(out)
    })
}

/// `st_x(point)` / `st_y(point)` (`axis` 0 / 1): a real, NULL for anything but a point.
pub(crate) fn st_coordinate(value: &SqliteValue, axis: usize) -> SqliteValue {
    match parse(value) {
        Some((Geometry::Point(Some(c)), _)) => c
            .get(axis)
            .filter(|v| !v.is_nan())
            .map_or(SqliteValue::Null, |v| SqliteValue::Real(*v)),
        _ => SqliteValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(s: &str) -> SqliteValue {
        SqliteValue::Text(s.into())
    }

    /// Hex (E)WKB as PostGIS prints it (`SELECT 'POINT(1 2)'::geometry`, `ST_GeomFromText`,
    /// `ST_AsBinary`), and the expected WKT and GeoJSON.
    #[test]
    fn postgis_values() {
        let cases = [
            (
                // SELECT 'POINT(1 2)'::geometry
                "0101000000000000000000F03F0000000000000040",
                "POINT(1 2)",
                r#"{"type":"Point","coordinates":[1,2]}"#,
            ),
            (
                // SELECT 'SRID=4326;POINT(-71.064544 42.28787)'::geometry
                "0101000020E6100000CB49287D21C451C0F0BF95ECD8244540",
                "POINT(-71.064544 42.28787)",
                r#"{"type":"Point","coordinates":[-71.064544,42.28787]}"#,
            ),
            (
                // SELECT 'POINT Z (1 2 3)'::geometry
                "0101000080000000000000F03F00000000000000400000000000000840",
                "POINT Z (1 2 3)",
                r#"{"type":"Point","coordinates":[1,2,3]}"#,
            ),
            (
                // big-endian ISO WKB POINT M (1 2 4): type 2001
                "00000007D13FF000000000000040000000000000004010000000000000",
                "POINT M (1 2 4)",
                r#"{"type":"Point","coordinates":[1,2]}"#,
            ),
            (
                // SELECT 'LINESTRING(0 0,1 1.5)'::geometry
                "01020000000200000000000000000000000000000000000000000000000000F03F000000000000F83F",
                "LINESTRING(0 0,1 1.5)",
                r#"{"type":"LineString","coordinates":[[0,0],[1,1.5]]}"#,
            ),
            (
                // SELECT 'POLYGON((0 0,1 0,1 1,0 0))'::geometry
                "0103000000010000000400000000000000000000000000000000000000000000000000F03F0000000000000000000000000000F03F000000000000F03F00000000000000000000000000000000",
                "POLYGON((0 0,1 0,1 1,0 0))",
                r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#,
            ),
            (
                // SELECT 'MULTIPOINT(1 2,3 4)'::geometry
                "0104000000020000000101000000000000000000F03F0000000000000040010100000000000000000008400000000000001040",
                "MULTIPOINT(1 2,3 4)",
                r#"{"type":"MultiPoint","coordinates":[[1,2],[3,4]]}"#,
            ),
            (
                // SELECT 'GEOMETRYCOLLECTION(POINT(1 2),LINESTRING EMPTY)'::geometry
                "0107000000020000000101000000000000000000F03F0000000000000040010200000000000000",
                "GEOMETRYCOLLECTION(POINT(1 2),LINESTRING EMPTY)",
                r#"{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,2]},{"type":"LineString","coordinates":[]}]}"#,
            ),
            (
                // SELECT 'POINT EMPTY'::geometry
                "0101000000000000000000F87F000000000000F87F",
                "POINT EMPTY",
                r#"{"type":"Point","coordinates":[]}"#,
            ),
        ];
        for (hex, text, json) in cases {
            assert_eq!(st_astext(&t(hex)), t(text), "{hex}");
            assert_eq!(st_asgeojson(&t(hex)), t(json), "{hex}");
            let blob = SqliteValue::Blob(hex::decode(hex).unwrap_or_default());
            assert_eq!(st_astext(&blob), t(text), "{hex} as a blob");
        }
        let point = t("0101000020E6100000CB49287D21C451C0F0BF95ECD8244540");
        assert_eq!(st_coordinate(&point, 0), SqliteValue::Real(-71.064544));
        assert_eq!(st_coordinate(&point, 1), SqliteValue::Real(42.28787));
        let line =
            t("01020000000200000000000000000000000000000000000000000000000000F03F000000000000F83F");
        assert_eq!(st_coordinate(&line, 0), SqliteValue::Null);
    }

    #[test]
    fn not_geometry_is_null() {
        for v in [
            SqliteValue::Null,
            SqliteValue::Integer(1),
            t("POINT(1 2)"),
            t("01"),
            // Truncated, and with a byte too many.
            t("0101000000000000000000F03F00000000000000"),
            t("0101000000000000000000F03F000000000000004000"),
            // A forged count of four billion points.
            t("0102000000FFFFFFFF"),
            // Circular string (type 8): not supported.
            t("0108000000000000000"),
        ] {
            assert_eq!(st_astext(&v), SqliteValue::Null, "{v:?}");
            assert_eq!(st_asgeojson(&v), SqliteValue::Null, "{v:?}");
            assert_eq!(st_coordinate(&v, 0), SqliteValue::Null, "{v:?}");
        }
    }

    #[test]
    fn numbers_as_javascript_writes_them() {
        let js = |f: f64| {
            let mut s = String::new();
            js_number(&mut s, f, true);
            s
        };
        assert_eq!(js(1.0), "1");
        assert_eq!(js(-0.0), "0");
        assert_eq!(js(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(js(1e21), "1e+21");
        assert_eq!(js(1.5e-7), "1.5e-7");
        assert_eq!(js(123_456.75), "123456.75");
        assert_eq!(js(f64::NAN), "null");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let v = SqliteValue::Blob(bytes);
            let _ = st_astext(&v);
            let _ = st_asgeojson(&v);
            let _ = st_coordinate(&v, 1);
        }
    }
}
