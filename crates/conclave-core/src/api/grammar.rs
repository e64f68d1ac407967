//! GBNF grammars for `response_format`: any JSON object (`json_object`) and a converter
//! for common JSON Schemas (`json_schema`).
//!
//! llama.cpp's own converter (`llama_cpp_2::json_schema_to_grammar`) could only run in the
//! worker, the one process that links llama.cpp. It is not used, on purpose: it accepts
//! what it cannot enforce (an unsupported `pattern` becomes "any string" with only a
//! warning), the crate's wrapper drops its error text (a bad schema reads "ffi error"),
//! and a schema could be checked only once a worker had loaded the model. This converter
//! refuses what it cannot enforce, with a 400 that says why, before any worker is involved.
//!
//! Supported: `type` (object, array, string, number, integer, boolean, null, or a list of
//! them), `properties` + `required`, `additionalProperties` (a schema, for objects without
//! `properties`), `items`, `minItems`/`maxItems`, `minLength`/`maxLength`, `enum`, `const`,
//! `anyOf`/`oneOf`, a one-element `allOf`, `nullable`, and local `$ref`s into `$defs` or
//! `definitions` (recursion allowed).
//! Limits: properties are generated in the order serde_json keeps them (alphabetical), the
//! listed properties only (no extra keys); numeric bounds (`minimum`, `multipleOf`…),
//! `format` and `uniqueItems` are not enforced; `pattern`, `not`, `if`, `prefixItems`,
//! `patternProperties` and multi-part `allOf` are refused rather than silently ignored.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

const MAX_DEPTH: usize = 64;
const MAX_RULES: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    #[error("the schema keyword `{0}` is not supported")]
    Unsupported(String),
    #[error("the schema is invalid: {0}")]
    Invalid(String),
    #[error("the schema is too deep or too large")]
    TooLarge,
}

/// Whitespace between tokens, bounded so a small model cannot loop on blank lines forever.
const WS: &str = r#"ws ::= | " " | "\n" [ \t]{0,20}"#;
const PRIMITIVES: &[(&str, &str)] = &[
    (
        "value",
        r#"object | array | string | number | boolean | null"#,
    ),
    (
        "object",
        r#""{" ws ( string ":" ws value ( "," ws string ":" ws value )* )? "}" ws"#,
    ),
    ("array", r#""[" ws ( value ( "," ws value )* )? "]" ws"#),
    ("string", r#""\"" char* "\"" ws"#),
    (
        "char",
        r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})"#,
    ),
    (
        "number",
        r#"( "-"? ( [0-9] | [1-9] [0-9]{0,15} ) ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9] [0-9]{0,15} )? ws"#,
    ),
    ("integer", r#"( "-"? ( [0-9] | [1-9] [0-9]{0,15} ) ) ws"#),
    ("boolean", r#"( "true" | "false" ) ws"#),
    ("null", r#""null" ws"#),
];

/// Any JSON object (OpenAI's JSON mode answers with an object).
pub fn json_object_grammar() -> String {
    let mut c = Converter::new(&Value::Null);
    c.need("object");
    c.finish("object")
}

/// A GBNF grammar (root rule `root`) for the values a JSON Schema accepts.
pub fn schema_to_gbnf(schema: &Value) -> Result<String, SchemaError> {
    let mut c = Converter::new(schema);
    let root = c.visit(schema, "root", 0)?;
    Ok(c.finish(&root))
}

struct Converter<'a> {
    root_schema: &'a Value,
    /// Named rules in the order they were made.
    rules: Vec<(String, String)>,
    names: HashSet<String>,
    refs: HashMap<String, String>,
    primitives: HashSet<&'static str>,
}

impl<'a> Converter<'a> {
    fn new(root_schema: &'a Value) -> Self {
        Self {
            root_schema,
            rules: Vec::new(),
            names: HashSet::new(),
            refs: HashMap::new(),
            primitives: HashSet::new(),
        }
    }

    /// Marks a primitive rule (and those it uses) as needed; returns its name.
    fn need(&mut self, name: &'static str) -> String {
        if self.primitives.insert(name) {
            let uses: &[&'static str] = match name {
                "value" => &["object", "array", "string", "number", "boolean", "null"],
                "object" => &["string", "value"],
                "array" => &["value"],
                "string" => &["char"],
                _ => &[],
            };
            for u in uses {
                self.need(u);
            }
        }
        name.to_owned()
    }

    fn finish(mut self, root: &str) -> String {
        let mut out = String::new();
        if root != "root" {
            out.push_str(&format!("root ::= {root}\n"));
        }
        // Root first, for people reading the grammar in a log.
        self.rules.sort_by_key(|(name, _)| name != "root");
        for (name, body) in self.rules.drain(..) {
            out.push_str(&format!("{name} ::= {body}\n"));
        }
        for (name, body) in PRIMITIVES {
            if self.primitives.contains(name) {
                out.push_str(&format!("{name} ::= {body}\n"));
            }
        }
        out.push_str(WS);
        out.push('\n');
        out
    }

    fn fresh_name(&mut self, hint: &str) -> String {
        let base: String = hint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_ascii_lowercase();
        let base = if base.is_empty() || PRIMITIVES.iter().any(|(p, _)| *p == base) || base == "ws"
        {
            format!("r-{base}")
        } else {
            base
        };
        let mut name = base.clone();
        let mut i = 1;
        while !self.names.insert(name.clone()) {
            i += 1;
            name = format!("{base}-{i}");
        }
        name
    }

    fn add_rule(&mut self, hint: &str, body: String) -> Result<String, SchemaError> {
        if self.rules.len() >= MAX_RULES {
            return Err(SchemaError::TooLarge);
        }
        let name = self.fresh_name(hint);
        self.rules.push((name.clone(), body));
        Ok(name)
    }

    /// Returns a rule name matching `schema`.
    fn visit(&mut self, schema: &Value, hint: &str, depth: usize) -> Result<String, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(SchemaError::TooLarge);
        }
        let obj = match schema {
            Value::Bool(true) => return Ok(self.need("value")),
            Value::Bool(false) => {
                return Err(SchemaError::Invalid(
                    "a `false` schema accepts nothing".into(),
                ))
            }
            Value::Object(o) => o,
            _ => return Err(SchemaError::Invalid("a schema must be an object".into())),
        };
        for kw in [
            "pattern",
            "not",
            "if",
            "prefixItems",
            "patternProperties",
            "contains",
            "propertyNames",
            "dependentSchemas",
        ] {
            if obj.contains_key(kw) {
                return Err(SchemaError::Unsupported(kw.into()));
            }
        }
        let body = self.visit_inner(obj, hint, depth)?;
        let body = if obj.get("nullable").and_then(Value::as_bool) == Some(true) {
            format!("{body} | {}", self.need("null"))
        } else {
            body
        };
        self.add_rule(hint, body)
    }

    /// The body of the rule for `obj` (an expression, not yet named).
    fn visit_inner(
        &mut self,
        obj: &Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, SchemaError> {
        if let Some(r) = obj.get("$ref") {
            let r = r
                .as_str()
                .ok_or_else(|| SchemaError::Invalid("`$ref` must be a string".into()))?;
            return self.visit_ref(r, depth);
        }
        if let Some(c) = obj.get("const") {
            return Ok(literal(c));
        }
        if let Some(e) = obj.get("enum") {
            let values = e
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| SchemaError::Invalid("`enum` must be a non-empty array".into()))?;
            return Ok(values.iter().map(literal).collect::<Vec<_>>().join(" | "));
        }
        for kw in ["anyOf", "oneOf"] {
            if let Some(alts) = obj.get(kw) {
                let alts = alts.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                    SchemaError::Invalid(format!("`{kw}` must be a non-empty array"))
                })?;
                let mut names = Vec::new();
                for (i, a) in alts.iter().enumerate() {
                    names.push(self.visit(a, &format!("{hint}-{i}"), depth + 1)?);
                }
                return Ok(names.join(" | "));
            }
        }
        if let Some(all) = obj.get("allOf") {
            return match all.as_array().map(Vec::as_slice) {
                Some([one]) => self.visit(one, hint, depth + 1),
                _ => Err(SchemaError::Unsupported("allOf".into())),
            };
        }
        match obj.get("type") {
            Some(Value::String(t)) => self.visit_type(t, obj, hint, depth),
            Some(Value::Array(ts)) => {
                let mut alts = Vec::new();
                for t in ts {
                    let t = t.as_str().ok_or_else(|| {
                        SchemaError::Invalid("`type` entries must be strings".into())
                    })?;
                    alts.push(self.visit_type(t, obj, hint, depth)?);
                }
                if alts.is_empty() {
                    return Err(SchemaError::Invalid("`type` must not be empty".into()));
                }
                Ok(alts
                    .into_iter()
                    .map(|a| format!("( {a} )"))
                    .collect::<Vec<_>>()
                    .join(" | "))
            }
            Some(_) => Err(SchemaError::Invalid(
                "`type` must be a string or an array".into(),
            )),
            // No type: infer from the keywords present, else any value.
            None if obj.contains_key("properties") => self.visit_type("object", obj, hint, depth),
            None if obj.contains_key("items") => self.visit_type("array", obj, hint, depth),
            None => Ok(self.need("value")),
        }
    }

    fn visit_ref(&mut self, r: &str, depth: usize) -> Result<String, SchemaError> {
        if let Some(name) = self.refs.get(r) {
            return Ok(name.clone());
        }
        let path = r
            .strip_prefix("#/")
            .ok_or_else(|| SchemaError::Unsupported(format!("$ref {r}")))?;
        let mut target = self.root_schema;
        for part in path.split('/') {
            let part = part.replace("~1", "/").replace("~0", "~");
            target = target
                .get(&part)
                .ok_or_else(|| SchemaError::Invalid(format!("`$ref` {r} points nowhere")))?;
        }
        // Named before it is visited, so a recursive reference finds it.
        let hint = path.rsplit('/').next().unwrap_or("ref");
        let name = self.fresh_name(&format!("ref-{hint}"));
        self.refs.insert(r.to_owned(), name.clone());
        let inner = self.visit(target, &format!("{name}-body"), depth + 1)?;
        self.rules.push((name.clone(), inner));
        Ok(name)
    }

    fn visit_type(
        &mut self,
        t: &str,
        obj: &Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, SchemaError> {
        Ok(match t {
            "string" => {
                let min = obj.get("minLength").and_then(Value::as_u64);
                let max = obj.get("maxLength").and_then(Value::as_u64);
                if min.is_none() && max.is_none() {
                    self.need("string")
                } else {
                    self.need("char");
                    let min = min.unwrap_or(0);
                    let rep = match max {
                        Some(max) if max < min => {
                            return Err(SchemaError::Invalid(
                                "`maxLength` is below `minLength`".into(),
                            ))
                        }
                        Some(max) => format!("{{{min},{max}}}"),
                        None => format!("{{{min},}}"),
                    };
                    format!(r#""\"" char{rep} "\"" ws"#)
                }
            }
            "number" => self.need("number"),
            "integer" => self.need("integer"),
            "boolean" => self.need("boolean"),
            "null" => self.need("null"),
            "array" => self.visit_array(obj, hint, depth)?,
            "object" => self.visit_object(obj, hint, depth)?,
            other => return Err(SchemaError::Invalid(format!("unknown type `{other}`"))),
        })
    }

    fn visit_array(
        &mut self,
        obj: &Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, SchemaError> {
        let item = match obj.get("items") {
            Some(s) => self.visit(s, &format!("{hint}-item"), depth + 1)?,
            None => self.need("value"),
        };
        let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = obj.get("maxItems").and_then(Value::as_u64);
        let more = format!(r#""," ws {item}"#);
        let inner = match (min, max) {
            (_, Some(m)) if m < min => {
                return Err(SchemaError::Invalid(
                    "`maxItems` is below `minItems`".into(),
                ))
            }
            (0, Some(0)) => String::new(),
            (0, None) => format!("( {item} ( {more} )* )?"),
            (0, Some(m)) => format!("( {item} ( {more} ){{0,{}}} )?", m - 1),
            (k, None) => format!("{item} ( {more} ){{{},}}", k - 1),
            (k, Some(m)) => format!("{item} ( {more} ){{{},{}}}", k - 1, m - 1),
        };
        Ok(format!(r#""[" ws {inner} "]" ws"#))
    }

    fn visit_object(
        &mut self,
        obj: &Map<String, Value>,
        hint: &str,
        depth: usize,
    ) -> Result<String, SchemaError> {
        let Some(props) = obj.get("properties") else {
            return Ok(match obj.get("additionalProperties") {
                Some(extra @ Value::Object(_)) => {
                    let v = self.visit(extra, &format!("{hint}-value"), depth + 1)?;
                    let s = self.need("string");
                    format!(r#""{{" ws ( {s} ":" ws {v} ( "," ws {s} ":" ws {v} )* )? "}}" ws"#)
                }
                _ => self.need("object"),
            });
        };
        let props = props
            .as_object()
            .ok_or_else(|| SchemaError::Invalid("`properties` must be an object".into()))?;
        let required: HashSet<&str> = match obj.get("required") {
            None => HashSet::new(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(SchemaError::Invalid("`required` must be an array".into())),
        };
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(SchemaError::Invalid(format!(
                "required property `{missing}` is not in `properties`"
            )));
        }
        let mut req = Vec::new();
        let mut opt = Vec::new();
        for (key, sub) in props {
            let v = self.visit(sub, &format!("{hint}-{key}"), depth + 1)?;
            let kv = format!(r#"{} ":" ws {v}"#, literal(&Value::String(key.clone())));
            if required.contains(key.as_str()) {
                req.push(kv);
            } else {
                opt.push(kv);
            }
        }
        let body = if req.is_empty() {
            // Any subset of the optional properties, in order: each choice of first one,
            // then the rest optional.
            let mut tails = vec![String::new(); opt.len() + 1];
            for i in (0..opt.len()).rev() {
                let rest = &tails[i + 1];
                let t = self.add_rule(
                    &format!("{hint}-rest"),
                    format!(r#"( "," ws {} )? {rest}"#, opt[i]),
                )?;
                tails[i] = t;
            }
            let firsts: Vec<String> = (0..opt.len())
                .map(|i| format!("{} {}", opt[i], tails[i + 1]))
                .collect();
            if firsts.is_empty() {
                String::new()
            } else {
                format!("( {} )?", firsts.join(" | "))
            }
        } else {
            let mut s = req.join(r#" "," ws "#);
            for o in &opt {
                s.push_str(&format!(r#" ( "," ws {o} )?"#));
            }
            s
        };
        Ok(format!(r#""{{" ws {body} "}}" ws"#))
    }
}

/// A GBNF literal matching `v` serialised as compact JSON, then optional whitespace.
fn literal(v: &Value) -> String {
    let json = v.to_string();
    let mut s = String::from("\"");
    for c in json.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c => s.push(c),
        }
    }
    s.push_str("\" ws");
    format!("( {s} )")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(g: &str) -> Vec<&str> {
        g.lines().filter_map(|l| l.split(" ::= ").next()).collect()
    }

    /// Rule names a body refers to: words outside literals, classes and repetitions.
    fn referenced(body: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            let close = match c {
                '"' => Some('"'),
                '[' => Some(']'),
                '{' => Some('}'),
                _ => None,
            };
            if c.is_ascii_alphanumeric() || c == '-' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if let Some(close) = close {
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == close {
                        break;
                    }
                }
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
        out
    }

    fn assert_all_defined(g: &str) {
        let defined: HashSet<&str> = rules(g).into_iter().collect();
        for line in g.lines() {
            let body = line.split_once(" ::= ").unwrap().1;
            for w in referenced(body) {
                assert!(
                    defined.contains(w.as_str()),
                    "undefined rule {w} in {line}\n{g}"
                );
            }
        }
    }

    #[test]
    fn json_object_grammar_is_closed() {
        let g = json_object_grammar();
        assert!(g.starts_with("root ::= object\n"), "{g}");
        for r in [
            "object", "value", "array", "string", "char", "number", "boolean", "null", "ws",
        ] {
            assert!(rules(&g).contains(&r), "{r} missing in {g}");
        }
    }

    #[test]
    fn object_schema_with_required_and_optional() {
        let g = schema_to_gbnf(&json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b\"c"]}, "maxItems": 3},
                "ok": {"type": ["boolean", "null"]}
            },
            "required": ["name", "age"]
        }))
        .unwrap();
        assert!(g.starts_with("root ::= \"{\" ws"), "{g}");
        assert!(g.contains(r#"( "\"name\"" ws ) ":" ws"#), "{g}");
        assert!(g.contains(r#"( "\"b\\\"c\"" ws )"#), "{g}");
        assert!(g.contains("){0,2}"), "{g}");
        assert_all_defined(&g);
    }

    #[test]
    fn optional_only_objects_and_refs() {
        let g = schema_to_gbnf(&json!({
            "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}, "v": {"type": "number"}}}},
            "$ref": "#/$defs/node"
        }))
        .unwrap();
        assert!(g.contains("ref-node ::="), "{g}");
        assert!(g.contains("rest"), "{g}");
        assert_all_defined(&g);
        assert_all_defined(&json_object_grammar());
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        assert_eq!(
            schema_to_gbnf(&json!({"type": "string", "pattern": "^a$"})),
            Err(SchemaError::Unsupported("pattern".into()))
        );
        assert!(
            schema_to_gbnf(&json!({"type": "object", "properties": {}, "required": ["x"]}))
                .is_err()
        );
        assert!(schema_to_gbnf(&json!({"$ref": "https://example.com/s.json"})).is_err());
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        assert_eq!(schema_to_gbnf(&deep), Err(SchemaError::TooLarge));
    }
}
