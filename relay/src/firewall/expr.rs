//! Small constructors for the nftables JSON pieces the ruleset uses, so that `mod.rs` reads
//! like the rules it builds (`udp dport 3478`, `ip daddr { a, b }`) and not like JSON.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::expr::{
    BinaryOperation, CT, Elem, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, Range,
    SetItem,
};
use nftables::stmt::{self, Counter, Match, Operator, Statement};

/// The two IP families the `inet` table sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    pub(super) fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// The payload protocol of the network header (`ip saddr`, `ip6 saddr`).
    fn proto(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// `meta nfproto ipv4`: restricts a rule to one family when it names no address.
    pub(super) fn only(self) -> Statement<'static> {
        let nfproto = match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        eq(meta(MetaKey::Nfproto), Expression::String(nfproto.into()))
    }

    pub(super) fn saddr(self) -> Expression<'static> {
        payload(self.proto(), "saddr")
    }

    pub(super) fn daddr(self) -> Expression<'static> {
        payload(self.proto(), "daddr")
    }
}

pub(super) fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    })))
}

pub(super) fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(super) fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match { left, right, op: Operator::EQ })
}

/// `left == value` for one value, `left == { a, b, ... }` (an anonymous set) for several.
pub(super) fn one_of(left: Expression<'static>, mut values: Vec<Expression<'static>>) -> Statement<'static> {
    let right = if values.len() == 1 {
        values.remove(0)
    } else {
        Expression::Named(NamedExpression::Set(values.into_iter().map(SetItem::Element).collect()))
    };
    eq(left, right)
}

pub(super) fn addr(ip: IpAddr) -> Expression<'static> {
    Expression::String(ip.to_string().into())
}

pub(super) fn net(net: IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(addr(net.network())),
        len: u32::from(net.prefix_len()),
    }))
}

pub(super) fn port(port: u16) -> Expression<'static> {
    Expression::Number(u32::from(port))
}

/// `min-max`, or the single port when the range has one port (nft refuses an empty range).
pub(super) fn port_range(min: u16, max: u16) -> Expression<'static> {
    if min == max { port(min) } else { Expression::Range(Box::new(Range { range: [port(min), port(max)] })) }
}

/// `ct state { states }`: a flag match, hence `in` rather than `==`.
pub(super) fn ct_state(states: &[&'static str]) -> Statement<'static> {
    let right = match states {
        [one] => Expression::String(Cow::Borrowed(one)),
        many => Expression::List(many.iter().map(|s| Expression::String(Cow::Borrowed(s))).collect()),
    };
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::CT(CT { key: "state".into(), family: None, dir: None })),
        right,
        op: Operator::IN,
    })
}

/// `ip6 saddr & ffff:ffff:ffff:ffff::`: an IPv6 source's /64, the unit a single host or
/// attacker usually controls, so that cycling through addresses of one /64 buys nothing.
pub(super) fn ipv6_slash64(saddr: Expression<'static>) -> Expression<'static> {
    Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        saddr,
        Expression::String("ffff:ffff:ffff:ffff::".into()),
    )))
}

/// `meter NAME { KEY timeout Ns limit rate over R/second burst B packets }`: matches when the
/// key's own token bucket is empty. The timeout lets idle sources leave the meter, so that it
/// does not fill up with every address ever seen.
pub(super) fn meter_over(
    name: String,
    key: Expression<'static>,
    timeout_s: u32,
    rate: u32,
    burst: u32,
) -> Statement<'static> {
    Statement::Meter(stmt::Meter {
        name: name.into(),
        key: Expression::Named(NamedExpression::Elem(Elem {
            val: Box::new(key),
            timeout: Some(timeout_s),
            expires: None,
            comment: None,
            counter: None,
        })),
        stmt: Box::new(Statement::Limit(stmt::Limit {
            rate,
            rate_unit: None,
            per: Some("second".into()),
            burst: Some(burst),
            burst_unit: None,
            inv: Some(true),
        })),
    })
}

pub(super) fn counter() -> Statement<'static> {
    Statement::Counter(Counter::Anonymous(None))
}

pub(super) fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

pub(super) fn drop() -> Statement<'static> {
    Statement::Drop(None)
}
