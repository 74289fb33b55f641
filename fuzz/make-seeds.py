#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/seeds/<target>/) from the repo's real data: the recorded trace
of the official service (crates/riptide-protocol/tests/official-trace.ndjson), the template's
sync rules, and requests, frames, tokens and messages shaped as the official SDKs and Postgres
send them. Run from the repo root: python3 fuzz/make-seeds.py (the output is committed)."""
import base64, hashlib, hmac, json, os, struct, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- BSON (enough of it for requests) ---------------------------------------------------------
def bson_value(v):
    if isinstance(v, bool):
        return 0x08, bytes([1 if v else 0])
    if isinstance(v, int):
        return 0x12, struct.pack("<q", v)
    if isinstance(v, float):
        return 0x01, struct.pack("<d", v)
    if isinstance(v, str):
        b = v.encode() + b"\0"
        return 0x02, struct.pack("<i", len(b)) + b
    if v is None:
        return 0x0A, b""
    if isinstance(v, dict):
        return 0x03, bson_doc(v)
    if isinstance(v, list):
        return 0x04, bson_doc({str(i): x for i, x in enumerate(v)})
    raise TypeError(v)


def bson_doc(d):
    body = b""
    for k, v in d.items():
        t, b = bson_value(v)
        body += bytes([t]) + k.encode() + b"\0" + b
    return struct.pack("<i", len(body) + 5) + body + b"\0"


# --- the official service's recorded lines and SDK-shaped requests ----------------------------
trace = open(os.path.join(ROOT, "crates/riptide-protocol/tests/official-trace.ndjson")).read()
requests = [
    {"buckets": [], "include_checksum": True, "raw_data": True, "binary_data": True,
     "client_id": "5f1c0b6e-2b1f-4a55-9d4e-3c2f4f7d9a10",
     "parameters": {"team": "a", "n": 1, "f": 1.5, "nested": {"x": [1, None, True]}},
     "streams": {"include_defaults": True, "subscriptions": [
         {"stream": "lists", "parameters": {"id": "1"}, "override_priority": 1}]},
     "app_metadata": {"app": "fuzz"}},
    {"buckets": [{"name": "1#global[]", "after": "5"}, {"name": "2#by_user[\"u\"]", "after": "0"}],
     "only": ["1#global[]"]},
    {},
]
setup_meta = {"token": "Token eyJhbGciOiJIUzI1NiJ9.e30.sig", "user_agent": "powersync-js/1.0"}
route_meta = {"path": "/sync/stream"}

for i, line in enumerate(trace.splitlines()):
    put("sync_request", f"trace-{i}", b"\0" + line.encode())
for i, r in enumerate(requests):
    put("sync_request", f"json-{i}", b"\0" + json.dumps(r).encode())
    put("sync_request", f"bson-{i}", b"\1" + bson_doc(r))
for name, m in [("setup", setup_meta), ("route", route_meta)]:
    put("rsocket_metadata", f"json-{name}", b"\0" + json.dumps(m).encode())
    put("rsocket_metadata", f"bson-{name}", b"\1" + bson_doc(m))


# --- RSocket frames as @powersync/web sends them over WebSocket -------------------------------
def header(stream, ftype, flags):
    return struct.pack(">IH", stream, (ftype << 10) | flags)


def u24(n):
    return struct.pack(">I", n)[1:]


def with_meta(meta, data):
    return u24(len(meta)) + meta + data


def setup(meta, data=b"", mime="application/json"):
    m = mime.encode()
    return (header(0, 0x01, 0x100) + struct.pack(">HHII", 1, 0, 20000, 30000)
            + bytes([len(m)]) + m + bytes([len(m)]) + m + with_meta(meta, data))


def request_stream(stream, n, meta, data, follows=False):
    return header(stream, 0x06, 0x100 | (0x80 if follows else 0)) + struct.pack(">I", n) + with_meta(meta, data)


frames = {
    "setup-json": setup(json.dumps(setup_meta).encode()),
    "setup-bson": setup(bson_doc(setup_meta), mime="application/bson"),
    "request-stream": request_stream(1, 10, json.dumps(route_meta).encode(), json.dumps(requests[0]).encode()),
    "request-stream-follows": request_stream(3, 10, b"", b"{\"buckets\"", follows=True),
    "payload-complete": header(3, 0x0A, 0x40 | 0x20) + b":[]}",
    "request-n": header(1, 0x08, 0) + struct.pack(">I", 100),
    "cancel": header(1, 0x09, 0),
    "keepalive": header(0, 0x03, 0x80) + struct.pack(">Q", 0),
    "error": header(0, 0x0B, 0) + struct.pack(">I", 0x102) + b"bye",
    "metadata-push": header(0, 0x0C, 0x100) + b"{}",
}
for name, f in frames.items():
    put("rsocket_frame", name, f)
sep = b"\xff\xfe"
put("rsocket_connection", "session", sep.join([frames["setup-json"], frames["request-stream"],
                                                frames["request-n"], frames["keepalive"], frames["cancel"]]))
put("rsocket_connection", "fragments", sep.join([frames["setup-json"], frames["request-stream-follows"],
                                                  frames["payload-complete"], frames["error"]]))
put("rsocket_connection", "bson", sep.join([frames["setup-bson"],
                                            request_stream(1, 1, bson_doc(route_meta), bson_doc(requests[1]))]))


# --- JWTs and JWKS ----------------------------------------------------------------------------
def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


now = int(time.time())
claims = {"sub": "user-1", "aud": "fuzz-audience", "iat": now, "exp": now + 3600,
          "parameters": {"team": "a"}}
secret = b"fuzz-secret-fuzz-secret-fuzz-secret!"
signing = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode()) + "." + b64(json.dumps(claims).encode())
token = signing + "." + b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())
put("jwt", "token", b"\0" + token.encode())
put("jwt", "token-none", b"\0" + (b64(b'{"alg":"none"}') + "." + b64(json.dumps(claims).encode()) + ".").encode())
put("jwt", "claims", b"\1" + json.dumps(claims).encode())
put("jwt", "claims-numeric-sub", b"\1" + json.dumps({**claims, "sub": 42, "aud": ["x", "fuzz-audience"], "nbf": now}).encode())
rsa_n = open(os.path.join(ROOT, "crates/riptide-service/src/auth/testdata/rsa_n.txt")).read().strip()
jwks = {"keys": [
    {"kty": "oct", "alg": "HS256", "kid": "k1", "k": b64(secret)},
    {"kty": "RSA", "alg": "RS256", "kid": "r1", "n": rsa_n, "e": "AQAB", "use": "sig"},
    {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "e1", "x": b64(bytes(32))},
    {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "p1", "x": b64(bytes(32)), "y": b64(bytes(32))},
    {"kty": "EC", "crv": "P-521", "alg": "ES512", "kid": "p5", "x": b64(bytes(66)), "y": b64(bytes(66))},
    {"kty": "RSA", "use": "enc", "n": rsa_n, "e": "AQAB"},
]}
put("jwks", "keys", json.dumps(jwks))
for i, k in enumerate(jwks["keys"]):
    put("jwks", f"key-{i}", json.dumps({"keys": [k]}))


# --- pgoutput (protocol versions 1 and 2) and text values -------------------------------------------
def cstr(s):
    return s.encode() + b"\0"


def tup(values):
    out = struct.pack(">h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        else:
            out += b"t" + struct.pack(">i", len(v)) + v
    return out


rel = (b"R" + struct.pack(">I", 16384) + cstr("public") + cstr("todos") + b"d" + struct.pack(">h", 3)
       + b"\1" + cstr("id") + struct.pack(">Ii", 2950, -1)
       + b"\0" + cstr("title") + struct.pack(">Ii", 25, -1)
       + b"\0" + cstr("tags") + struct.pack(">Ii", 1009, -1))
row = tup([b"3df74906-cfa9-4516-b908-7e136e4eb65b", b"Groceries", b'{a,"b c",NULL}'])
pg = {
    "begin": b"B" + struct.pack(">QqI", 0x16B3748, 1, 750),
    "commit": b"C" + b"\0" + struct.pack(">QQq", 0x16B3748, 0x16B3778, 1),
    "origin": b"O" + struct.pack(">Q", 1) + cstr("node"),
    "relation": rel,
    "type": b"Y" + struct.pack(">I", 90000) + cstr("public") + cstr("mood"),
    "insert": b"I" + struct.pack(">I", 16384) + b"N" + row,
    "update": b"U" + struct.pack(">I", 16384) + b"K" + tup([b"1", None, None]) + b"N" + row,
    "update-toast": b"U" + struct.pack(">I", 16384) + b"N" + tup([b"1", None]) [:-1] + b"u",
    "delete": b"D" + struct.pack(">I", 16384) + b"O" + row,
    "truncate": b"T" + struct.pack(">IBII", 2, 1, 16384, 16385),
    "message": b"M" + b"\1" + struct.pack(">Q", 5) + cstr("powersync") + struct.pack(">i", 2) + b"{}",
}
# Protocol 2: a streamed transaction's boundaries, and messages inside its blocks (xid first).
xid = struct.pack(">I", 751)
pg.update({
    "stream-start": b"S" + struct.pack(">IB", 750, 1),
    "stream-stop": b"E",
    "stream-commit": b"c" + struct.pack(">IBQQq", 750, 0, 0x16B3748, 0x16B3778, 1),
    "stream-abort": b"A" + struct.pack(">II", 750, 751),
    "stream-relation": b"R" + xid + rel[1:],
    "stream-insert": b"I" + xid + struct.pack(">I", 16384) + b"N" + row,
    "stream-delete": b"D" + xid + struct.pack(">I", 16384) + b"K" + tup([b"1", None, None]),
    "stream-message": b"M" + xid + b"\1" + struct.pack(">Q", 5) + cstr("powersync") + struct.pack(">i", 2) + b"{}",
})
for name, m in pg.items():
    put("pgoutput", name, m)

values = {
    "bool": (0, b"t"), "int": (1, b"-9223372036854775808"), "float": (2, b"-Infinity"),
    "text": (3, b"hello"), "json": (4, b'{"a":[1,2]}'), "bytea": (5, b"\\x0102ff"),
    "bytea-escape": (5, b"a\\\\b\\001"), "date": (6, b"2024-05-01"), "time": (7, b"13:45:10.5"),
    "timestamp": (8, b"2024-05-01 13:45:10.123"), "timestamptz": (9, b"2024-05-01 13:45:10.123+02:30"),
    "lsn": (10, b"16/B374D848"), "int-array": (0x80 | 1, b"{1,2,NULL}"),
    "json-array": (0x80 | 4, b'{"{\\"a\\":1}",NULL}'), "ts-array": (0x80 | 9, b'{"2024-05-01 13:45:10+00"}'),
    "nested-array": (0x80 | 3, b'[0:1][1:2]={{a,b},{"c d",NULL}}'),
}
for name, (kind, text) in values.items():
    for fmt in (0, 1, 5):
        put("pg_value", f"{name}-{fmt}", bytes([kind, fmt]) + text)
for name, lit in {"flat": "{1,2,3}", "quoted": '{"a b","c\\"d",NULL,"NULL"}', "nested": "{{1,2},{3,4}}",
                  "dims": "[0:1]={5,6}", "empty": "{}", "spaces": "{ a , b }", "escaped": "{a\\,b}"}.items():
    put("pg_array", name, lit)


# --- sync rules, their SQL, the config file, the template's upload body -----------------------
template_rules = open(os.path.join(ROOT, "templates/realtime/sync-rules.yaml")).read()
put("sync_rules_yaml", "template", template_rules)
put("sync_rules_yaml", "buckets", """bucket_definitions:
  by_user:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT id, name, json_extract(meta, '$.a') AS a FROM lists WHERE owner = bucket.user_id
      - SELECT * FROM todos WHERE owner = bucket.user_id AND done = 0
  global:
    data:
      - SELECT id, upper(name) AS name, CAST(n AS TEXT) AS n FROM "public"."items"
""")
put("sync_rules_yaml", "streams", """config:
  edition: 3
with:
  mine: SELECT id FROM lists WHERE owner_id = auth.user_id()
streams:
  todos:
    auto_subscribe: true
    query: SELECT * FROM todos WHERE list_id IN mine
  one:
    query: SELECT * FROM t WHERE id = subscription.parameter('id') AND x -> 'a' = 1
""")
sql_seeds = [
    (0, "SELECT id, name, created_at FROM lists WHERE owner_id = bucket.user_id"),
    (0, "SELECT *, length(name) AS l, ifnull(a, 'x') AS b FROM t WHERE x IS NOT NULL AND y IN ('a', 'b')"),
    (1, "SELECT id AS user_id FROM users WHERE users.id = request.user_id()"),
    (1, "SELECT value AS id FROM json_each(request.jwt() ->> 'teams')"),
    (2, "SELECT * FROM todos WHERE list_id IN (SELECT id FROM lists WHERE owner = auth.user_id())"),
    (2, "SELECT id, CASE WHEN done THEN 1 ELSE 0 END AS d FROM t WHERE id = subscription.parameter('id')"),
    (3, "SELECT id FROM lists WHERE owner_id = auth.user_id()"),
]
for i, (sel, sql) in enumerate(sql_seeds):
    put("sync_rules_sql", f"sql-{i}", bytes([sel]) + sql.encode())
put("config_file", "full", """replication:
  connections:
    - type: postgresql
      uri: postgresql://me:pw@db.example:5432/app?sslmode=verify-full&channel_binding=require
      sslmode: verify-full
      cacert: |
        -----BEGIN CERTIFICATE-----
        MIIB
        -----END CERTIFICATE-----
storage:
  type: postgresql
  uri: postgres://me:pw@db.example/storage
host: 127.0.0.1
port: 8080
sync_config:
  content: |
    bucket_definitions:
      global:
        data:
          - SELECT * FROM lists
client_auth:
  jwks_uri: https://auth.example/.well-known/jwks.json
  jwks:
    keys:
      - { kty: oct, alg: HS256, kid: k1, k: c2VjcmV0 }
  audience: [app]
  block_local_jwks: true
  jwks_reject_ip_ranges: [10.0.0.0/8]
api:
  tokens: [admin-token]
system:
  logging:
    level: info
    format: json
""")
put("config_file", "env", """replication:
  connections:
    - type: postgresql
      hostname: !env PS_HOST
      port: 5432
      database: app
      username: me
      password: !env PS_PASSWORD
storage:
  type: postgresql
client_auth:
  supabase: true
  supabase_jwt_secret: secret
""")
entry = lambda op, table, id, data=None: {"op": op, "type": table, "id": id, **({"data": data} if data is not None else {}), "op_id": 1, "tx_id": 2}
uid = "3df74906-cfa9-4516-b908-7e136e4eb65b"
put("upload_body", "batch", json.dumps({"batch": [
    entry("PUT", "todos", uid, {"done": 1, "n": 5, "x": 1.5, "t": "hi", "j": "{\"a\":1}", "at": "2024-05-01T00:00:00Z", "o": "1 day"}),
    entry("PATCH", "todos", uid, {"t": None, "done": 0}),
    entry("DELETE", "notes", "note-1"),
]}))
put("upload_body", "bad", json.dumps({"batch": [entry("PUT", "todos", "not-a-uuid", {"g": "x"})]}))

# --- storage notifications (NOTIFY payloads between processes on one storage) ------------------
node = "3f1c9a2e-7b41-4d0a-9e55-1c2d3e4f5a6b"
put("storage_notification", "checkpoint", json.dumps({"kind": "checkpoint", "v": 1, "node": node,
    "deployment": 3, "previous": 120, "op_id": 131, "lsn": "0/16B3748",
    "buckets": ["1#by_user[\"u1\"]", "1#global[]"], "lookups": [base64.b64encode(b"\x01lists\x00u1").rstrip(b"=").decode()],
    "at_us": 1764900000123456}, separators=(",", ":")))
put("storage_notification", "checkpoint-too-many", json.dumps({"kind": "checkpoint", "v": 1,
    "node": node, "deployment": 3, "previous": 131, "op_id": 9000, "lsn": "1/0", "buckets": None,
    "lookups": None, "at_us": 1764900000223456}, separators=(",", ":")))
put("storage_notification", "write-checkpoint", json.dumps({"kind": "write_checkpoint", "v": 1,
    "node": node, "user_id": "u1", "client_id": "c-1", "id": 17, "at_us": 1764900000323456},
    separators=(",", ":")))
put("storage_notification", "deployment", json.dumps({"kind": "deployment", "v": 1, "node": node,
    "deployment": 4, "state": "ACTIVE", "at_us": 1764900000423456}, separators=(",", ":")))
print("seeds written to", OUT)
