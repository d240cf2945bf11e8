//! Kubernetes-style equality label selectors: `rack=r1,env!=prod,gpu,!retired`.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    Absent(String),
}

/// A parsed selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Term>);

impl Selector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for raw in s.split(',') {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            let term = if let Some((k, v)) = t.split_once("!=") {
                Term::NotEq(key(k, t)?, value(v, t)?)
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                Term::Eq(key(k, t)?, value(v, t)?)
            } else if let Some(k) = t.strip_prefix('!') {
                Term::Absent(key(k, t)?)
            } else {
                Term::Exists(key(t, t)?)
            };
            terms.push(term);
        }
        Ok(Selector(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        self.0.iter().all(|t| match t {
            Term::Eq(k, v) => labels.get(k) == Some(v),
            Term::NotEq(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
            Term::Absent(k) => !labels.contains_key(k),
        })
    }
}

fn key(k: &str, term: &str) -> Result<String, String> {
    let k = k.trim();
    if k.is_empty() || k.contains(['=', '!', ' ']) {
        return Err(format!(
            "label selector term {term:?}: missing or malformed key"
        ));
    }
    Ok(k.to_string())
}

fn value(v: &str, term: &str) -> Result<String, String> {
    let v = v.trim();
    if v.contains(['=', '!', ' ']) {
        return Err(format!("label selector term {term:?}: malformed value"));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn terms() {
        let l = labels(&[("rack", "r1"), ("gpu", "")]);
        let m = |s: &str| Selector::parse(s).unwrap().matches(&l);
        assert!(m(""));
        assert!(m("rack=r1"));
        assert!(m("rack==r1, gpu"));
        assert!(!m("rack=r2"));
        assert!(m("rack!=r2"));
        assert!(m("!retired"));
        assert!(!m("!gpu"));
        assert!(!m("rack=r1,env=prod"));
    }

    #[test]
    fn refuses_malformed() {
        for s in ["=x", "a=b=c", "!", "a!=b=c"] {
            assert!(Selector::parse(s).is_err(), "{s}");
        }
    }
}
