//! `--stream`: a value as jq's streaming parser reports it, one event per leaf (`[[path],
//! leaf]`, an empty array or object being a leaf) and one closing event per non-empty array or
//! object (`[[path to its last element]]`), in document order — what `tostream` makes.

use jaq_json::{Num, Rc, Val};

/// The events of `v`, in order.
pub(crate) fn events(v: &Val) -> Vec<Val> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(&mut path, v, &mut out);
    out
}

fn arr(items: Vec<Val>) -> Val {
    Val::Arr(Rc::new(items))
}

fn walk(path: &mut Vec<Val>, v: &Val, out: &mut Vec<Val>) {
    let last = match v {
        Val::Arr(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                path.push(Val::Num(Num::from_integral(i)));
                walk(path, x, out);
                path.pop();
            }
            Val::Num(Num::from_integral(a.len() - 1))
        }
        Val::Obj(o) if !o.is_empty() => {
            let mut last = Val::Null;
            for (k, x) in o.iter() {
                path.push(k.clone());
                walk(path, x, out);
                path.pop();
                last = k.clone();
            }
            last
        }
        leaf => {
            out.push(arr(vec![arr(path.clone()), leaf.clone()]));
            return;
        }
    };
    let mut closing = path.clone();
    closing.push(last);
    out.push(arr(vec![arr(closing)]));
}

/// `--stream-errors`: invalid input as the event `["message at line N", []]`.
pub(crate) fn error_event(reason: &str, line: u64) -> Val {
    let msg = format!("{reason} at line {line}");
    arr(vec![Val::utf8_str(msg.into_bytes()), arr(Vec::new())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(events: &[Val]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(crate::write::to_json(e)).unwrap())
            .collect()
    }

    #[test]
    fn events_as_jq_streams_them() {
        let v = crate::read::parse_one(r#"{"a":[1,{"b":2}],"c":[],"d":{}}"#).unwrap();
        assert_eq!(
            json(&events(&v)),
            [
                r#"[["a",0],1]"#,
                r#"[["a",1,"b"],2]"#,
                r#"[["a",1,"b"]]"#,
                r#"[["a",1]]"#,
                r#"[["c"],[]]"#,
                r#"[["d"],{}]"#,
                r#"[["d"]]"#,
            ]
        );
        let scalar = crate::read::parse_one("3").unwrap();
        assert_eq!(json(&events(&scalar)), ["[[],3]"]);
    }
}
