//! The expression IR sqlparser's AST is lowered into: names resolved, functions looked up,
//! request/bucket references recognised. Evaluated by [`crate::eval`].

use crate::SqliteValue;
use crate::cast::CastType;
use crate::compare::Affinity;
use crate::functions::Function;

/// A value the request provides.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RequestValue {
    /// `request.user_id()`, `token_parameters.user_id`.
    UserId,
    /// `request.jwt()`: the token payload as JSON text.
    Jwt,
    /// `request.parameters()`: the client's parameters as JSON text (untrusted).
    Parameters,
    /// `token_parameters.<key>`.
    TokenParameter(Box<str>),
    /// `user_parameters.<key>` (untrusted).
    UserParameter(Box<str>),
    /// `subscription.parameters()`: one stream subscription's parameters as JSON text, NULL for
    /// a default subscription (untrusted).
    SubscriptionParameters,
}

impl RequestValue {
    /// Whether the client controls this value.
    pub(crate) fn untrusted(&self) -> bool {
        matches!(
            self,
            RequestValue::Parameters
                | RequestValue::UserParameter(_)
                | RequestValue::SubscriptionParameters
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
    /// `->`
    Arrow,
    /// `->>`
    LongArrow,
    /// `->` under `fixed_json_extract` (see [`crate::json_fixed`]).
    ArrowFixed,
    /// `->>` under `fixed_json_extract`.
    LongArrowFixed,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Literal(SqliteValue),
    /// A column of the row in scope (source row, or a `json_each` element row).
    Column(Box<str>),
    Request(RequestValue),
    /// `bucket.<name>`: only ever appears as one side of a data query's `=`; the analysis of
    /// the WHERE clause removes it before evaluation.
    Bucket(Box<str>),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>, bool),
    /// `a IS b` (`true`: `IS NOT`).
    Is(Box<Expr>, Box<Expr>, bool),
    /// `x [NOT] IN (a, b, …)`.
    InList(Box<Expr>, Vec<Expr>, bool),
    /// `x [NOT] IN <JSON array expression>`.
    InJson(Box<Expr>, Box<Expr>, bool),
    Cast(Box<Expr>, CastType),
    Call(Function, Vec<Expr>),
    /// `CASE [operand] WHEN … THEN … [ELSE …] END` (Sync Streams).
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
}

/// What an expression reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deps {
    pub row: bool,
    pub request: bool,
    pub untrusted: bool,
    pub bucket: bool,
}

impl Expr {
    pub(crate) fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Literal(_) | Expr::Column(_) | Expr::Request(_) | Expr::Bucket(_) => vec![],
            Expr::Not(e) | Expr::Negate(e) | Expr::IsNull(e, _) | Expr::Cast(e, _) => vec![e],
            Expr::Binary(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Is(a, b, _)
            | Expr::InJson(a, b, _) => vec![a, b],
            Expr::InList(e, list, _) => std::iter::once(&**e).chain(list.iter()).collect(),
            Expr::Call(_, args) => args.iter().collect(),
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => operand
                .as_deref()
                .into_iter()
                .chain(whens.iter().flat_map(|(w, t)| [w, t]))
                .chain(otherwise.as_deref())
                .collect(),
        }
    }

    pub(crate) fn deps(&self) -> Deps {
        let mut d = Deps::default();
        self.collect_deps(&mut d);
        d
    }

    fn collect_deps(&self, d: &mut Deps) {
        match self {
            Expr::Column(_) => d.row = true,
            Expr::Request(r) => {
                d.request = true;
                d.untrusted |= r.untrusted();
            }
            Expr::Bucket(_) => d.bucket = true,
            _ => {
                for c in self.children() {
                    c.collect_deps(d);
                }
            }
        }
    }

    /// The affinity this expression brings to a comparison.
    pub(crate) fn affinity(&self) -> Affinity {
        match self {
            Expr::Cast(_, ty) => Affinity::from(*ty),
            _ => Affinity::None,
        }
    }
}
