//! Enough TypeScript to check JSON against `ui/src/lib/types.ts`: `interface` (with
//! `extends` and index signatures) and `type` aliases made of names, string literals, object
//! literals, arrays and unions. A small hand-written tokenizer and parser, no regular
//! expressions; anything else at the top level is skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A type as declared.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// `string`, `number`, `boolean`, `null`, `unknown`, or a declared name.
    Named(String),
    /// A string literal: `'start'`.
    Literal(String),
    Array(Box<Ty>),
    Union(Vec<Ty>),
    Object(ObjectTy),
}

/// An interface or an object literal type.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectTy {
    /// Where it is declared: `Message`, `ModelsListing.broken`, `ChatEvent('token')`.
    pub id: String,
    pub extends: Vec<String>,
    pub fields: Vec<Field>,
    /// Has an index signature (`[key: string]: unknown`): any other key is allowed.
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub optional: bool,
    pub ty: Ty,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Punct(char),
}

fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    let word_char = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    while at < chars.len() {
        let c = chars[at];
        let next = chars.get(at + 1).copied();
        if c.is_whitespace() {
            at += 1;
        } else if c == '/' && next == Some('/') {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
        } else if c == '/' && next == Some('*') {
            at += 2;
            while at < chars.len() && !(chars[at] == '*' && chars.get(at + 1) == Some(&'/')) {
                at += 1;
            }
            at += 2;
        } else if matches!(c, '\'' | '"' | '`') {
            let mut text = String::new();
            at += 1;
            while at < chars.len() && chars[at] != c {
                if chars[at] == '\\' {
                    at += 1;
                }
                if let Some(&escaped) = chars.get(at) {
                    text.push(escaped);
                }
                at += 1;
            }
            at += 1;
            tokens.push(Token::Str(text));
        } else if word_char(c) {
            let start = at;
            while at < chars.len() && word_char(chars[at]) {
                at += 1;
            }
            tokens.push(Token::Word(chars[start..at].iter().collect()));
        } else {
            tokens.push(Token::Punct(c));
            at += 1;
        }
    }
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn eat(&mut self, punct: char) -> bool {
        if self.peek() == Some(&Token::Punct(punct)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: char) -> Result<(), String> {
        if self.eat(punct) {
            Ok(())
        } else {
            Err(format!("expected `{punct}`, found {:?}", self.peek()))
        }
    }

    fn word(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Word(word)) => Ok(word),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    /// Skips a statement this reader does not need, up to its `;` or its last `}`.
    fn skip_statement(&mut self) {
        let mut depth = 0usize;
        while let Some(token) = self.next() {
            match token {
                Token::Punct('{' | '(' | '[') => depth += 1,
                Token::Punct('}' | ')' | ']') => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 && self.peek() != Some(&Token::Punct(';')) {
                        return;
                    }
                }
                Token::Punct(';') if depth == 0 => return,
                _ => {}
            }
        }
    }

    fn declarations(&mut self) -> Result<BTreeMap<String, Ty>, String> {
        let mut declared = BTreeMap::new();
        while let Some(token) = self.peek().cloned() {
            match token {
                Token::Word(word) if word == "export" => self.at += 1,
                Token::Word(word) if word == "interface" => {
                    self.at += 1;
                    let name = self.word()?;
                    let mut extends = Vec::new();
                    if self.peek() == Some(&Token::Word("extends".into())) {
                        self.at += 1;
                        extends.push(self.word()?);
                        while self.eat(',') {
                            extends.push(self.word()?);
                        }
                    }
                    self.expect('{')?;
                    let mut object = self.object_body(&name)?;
                    object.extends = extends;
                    declared.insert(name, Ty::Object(object));
                }
                Token::Word(word) if word == "type" => {
                    self.at += 1;
                    let name = self.word()?;
                    self.expect('=')?;
                    let ty = self.union(&name)?;
                    self.eat(';');
                    declared.insert(name, ty);
                }
                _ => self.skip_statement(),
            }
        }
        Ok(declared)
    }

    /// The members of an object type, after its `{`, through its `}`.
    fn object_body(&mut self, id: &str) -> Result<ObjectTy, String> {
        let mut object = ObjectTy {
            id: id.to_string(),
            extends: Vec::new(),
            fields: Vec::new(),
            open: false,
        };
        while !self.eat('}') {
            if self.eat('[') {
                // An index signature: `[key: string]: unknown`.
                while !self.eat(']') {
                    self.next().ok_or("unterminated index signature")?;
                }
                self.expect(':')?;
                self.union(id)?;
                object.open = true;
            } else {
                let name = match self.next() {
                    Some(Token::Word(name) | Token::Str(name)) => name,
                    other => return Err(format!("{id}: expected a field, found {other:?}")),
                };
                let optional = self.eat('?');
                self.expect(':')?;
                let ty = self.union(&format!("{id}.{name}"))?;
                object.fields.push(Field { name, optional, ty });
            }
            if !self.eat(';') {
                self.eat(',');
            }
        }
        Ok(object)
    }

    fn union(&mut self, context: &str) -> Result<Ty, String> {
        self.eat('|');
        let mut members = vec![self.array(context)?];
        while self.eat('|') {
            members.push(self.array(context)?);
        }
        if members.len() == 1 {
            return Ok(members.remove(0));
        }
        // Object members of a union are named by their `type` literal, if they have one.
        for (index, member) in members.iter_mut().enumerate() {
            if let Ty::Object(object) = member {
                let tag = object.fields.iter().find_map(|field| match &field.ty {
                    Ty::Literal(tag) if field.name == "type" => Some(tag.clone()),
                    _ => None,
                });
                let suffix = tag.map_or_else(|| format!("#{index}"), |tag| format!("('{tag}')"));
                rename_objects(object, &format!("{context}{suffix}"));
            }
        }
        Ok(Ty::Union(members))
    }

    fn array(&mut self, context: &str) -> Result<Ty, String> {
        let mut ty = self.atom(context)?;
        while self.peek() == Some(&Token::Punct('['))
            && self.tokens.get(self.at + 1) == Some(&Token::Punct(']'))
        {
            self.at += 2;
            ty = Ty::Array(Box::new(ty));
        }
        Ok(ty)
    }

    fn atom(&mut self, context: &str) -> Result<Ty, String> {
        match self.next() {
            Some(Token::Punct('{')) => Ok(Ty::Object(self.object_body(context)?)),
            Some(Token::Punct('(')) => {
                let ty = self.union(context)?;
                self.expect(')')?;
                Ok(ty)
            }
            Some(Token::Str(literal)) => Ok(Ty::Literal(literal)),
            Some(Token::Word(name)) => {
                if self.eat('<') {
                    // Generic arguments are not needed here: skip them.
                    let mut depth = 1;
                    while depth > 0 {
                        match self.next().ok_or("unterminated type arguments")? {
                            Token::Punct('<') => depth += 1,
                            Token::Punct('>') => depth -= 1,
                            _ => {}
                        }
                    }
                }
                Ok(Ty::Named(name))
            }
            other => Err(format!("{context}: expected a type, found {other:?}")),
        }
    }
}

/// Renames an object type and the object types inside it (`ChatEvent#0.x` → `ChatEvent('start').x`).
fn rename_objects(object: &mut ObjectTy, id: &str) {
    object.id = id.to_string();
    for field in &mut object.fields {
        let inner = format!("{id}.{}", field.name);
        rename_in(&mut field.ty, &inner);
    }
}

fn rename_in(ty: &mut Ty, id: &str) {
    match ty {
        Ty::Object(object) => rename_objects(object, id),
        Ty::Array(inner) => rename_in(inner, id),
        Ty::Union(members) => members.iter_mut().for_each(|member| rename_in(member, id)),
        Ty::Named(_) | Ty::Literal(_) => {}
    }
}

/// The declarations of a TypeScript file, by name.
pub fn parse(source: &str) -> Result<BTreeMap<String, Ty>, String> {
    Parser {
        tokens: tokenize(source),
        at: 0,
    }
    .declarations()
}

/// Checks JSON values against the declarations, collecting every mismatch, and which
/// declared fields the values held.
#[derive(Debug)]
pub struct Checker<'a> {
    declared: &'a BTreeMap<String, Ty>,
    pub errors: Vec<String>,
    /// For each object type a value was checked against: the fields some value held.
    seen: BTreeMap<String, BTreeSet<String>>,
}

impl<'a> Checker<'a> {
    pub fn new(declared: &'a BTreeMap<String, Ty>) -> Self {
        Self {
            declared,
            errors: Vec::new(),
            seen: BTreeMap::new(),
        }
    }

    /// Checks `value` against the declared type `name`.
    pub fn check_named(&mut self, value: &Value, name: &str) {
        self.check(value, &Ty::Named(name.to_string()), name);
    }

    fn check(&mut self, value: &Value, ty: &Ty, path: &str) {
        match ty {
            Ty::Named(name) => self.check_name(value, name, path),
            Ty::Literal(literal) => {
                if value.as_str() != Some(literal) {
                    self.errors
                        .push(format!("{path}: {value} where types.ts says '{literal}'"));
                }
            }
            Ty::Array(inner) => match value.as_array() {
                Some(items) => {
                    for (index, item) in items.iter().enumerate() {
                        self.check(item, inner, &format!("{path}[{index}]"));
                    }
                }
                None => self.errors.push(format!("{path}: {value} is not an array")),
            },
            Ty::Union(members) => self.check_union(value, members, path),
            Ty::Object(object) => self.check_object(value, object, path),
        }
    }

    fn check_name(&mut self, value: &Value, name: &str, path: &str) {
        let fits = match name {
            "string" => value.is_string(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" | "undefined" => value.is_null(),
            "unknown" | "any" => true,
            _ => {
                let Some(ty) = self.declared.get(name) else {
                    self.errors
                        .push(format!("{path}: types.ts declares no type `{name}`"));
                    return;
                };
                return self.check(value, ty, path);
            }
        };
        if !fits {
            self.errors
                .push(format!("{path}: {value} where types.ts says {name}"));
        }
    }

    /// The value must fit one member. An object goes to the member whose `type` literal it
    /// carries, if one has it; anything else fits if any member fits.
    fn check_union(&mut self, value: &Value, members: &[Ty], path: &str) {
        if let Some(tag) = value.get("type").and_then(Value::as_str) {
            let tagged = members.iter().find(|member| match self.resolve(member) {
                Some(Ty::Object(object)) => object
                    .fields
                    .iter()
                    .any(|field| field.name == "type" && field.ty == Ty::Literal(tag.into())),
                _ => false,
            });
            if let Some(member) = tagged {
                return self.check(value, member, path);
            }
        }
        for member in members {
            let mut attempt = Checker::new(self.declared);
            attempt.check(value, member, path);
            if attempt.errors.is_empty() {
                for (id, fields) in attempt.seen {
                    self.seen.entry(id).or_default().extend(fields);
                }
                return;
            }
        }
        self.errors.push(format!(
            "{path}: {value} where types.ts says {}",
            describe(&Ty::Union(members.to_vec()))
        ));
    }

    /// A declared name's type, or the type itself.
    fn resolve<'t>(&'t self, ty: &'t Ty) -> Option<&'t Ty> {
        match ty {
            Ty::Named(name) => self.declared.get(name),
            other => Some(other),
        }
    }

    fn check_object(&mut self, value: &Value, object: &ObjectTy, path: &str) {
        let Some(map) = value.as_object() else {
            self.errors
                .push(format!("{path}: {value} where types.ts says {}", object.id));
            return;
        };
        let fields = self.fields_of(object);
        for (owner, _) in &fields {
            self.seen.entry(owner.clone()).or_default();
        }
        for (key, item) in map {
            match fields.iter().find(|(_, field)| field.name == *key) {
                Some((owner, field)) => {
                    self.seen
                        .entry(owner.clone())
                        .or_default()
                        .insert(key.clone());
                    self.check(item, &field.ty, &format!("{path}.{key}"));
                }
                None if object.open => {}
                None => self.errors.push(format!(
                    "{path}.{key}: sent by the server, not declared in {} (types.ts)",
                    object.id
                )),
            }
        }
        for (owner, field) in &fields {
            if !field.optional && !map.contains_key(&field.name) {
                self.errors.push(format!(
                    "{path}.{}: required by {owner} (types.ts), not sent by the server",
                    field.name
                ));
            }
        }
    }

    /// An object type's fields and those of the interfaces it extends, each with the type
    /// that declares it.
    fn fields_of(&mut self, object: &ObjectTy) -> Vec<(String, Field)> {
        let mut fields: Vec<(String, Field)> = object
            .fields
            .iter()
            .map(|field| (object.id.clone(), field.clone()))
            .collect();
        for parent in &object.extends {
            match self.declared.get(parent) {
                Some(Ty::Object(parent)) => {
                    let parent = parent.clone();
                    fields.extend(self.fields_of(&parent));
                }
                _ => self.errors.push(format!(
                    "{}: extends `{parent}`, not an interface",
                    object.id
                )),
            }
        }
        fields
    }

    /// The fields declared by the object types the values were checked against that no value
    /// held, as `Type.field`.
    pub fn never_sent(&self) -> Vec<String> {
        let mut objects = Vec::new();
        for ty in self.declared.values() {
            collect_objects(ty, &mut objects);
        }
        let mut unsent = Vec::new();
        for object in objects {
            let Some(seen) = self.seen.get(&object.id) else {
                continue;
            };
            for field in &object.fields {
                if !seen.contains(&field.name) {
                    unsent.push(format!("{}.{}", object.id, field.name));
                }
            }
        }
        unsent
    }
}

/// A type as types.ts writes it (object types by where they are declared).
fn describe(ty: &Ty) -> String {
    match ty {
        Ty::Named(name) => name.clone(),
        Ty::Literal(literal) => format!("'{literal}'"),
        Ty::Array(inner) => format!("{}[]", describe(inner)),
        Ty::Union(members) => members.iter().map(describe).collect::<Vec<_>>().join(" | "),
        Ty::Object(object) => object.id.clone(),
    }
}

fn collect_objects<'t>(ty: &'t Ty, objects: &mut Vec<&'t ObjectTy>) {
    match ty {
        Ty::Object(object) => {
            objects.push(object);
            for field in &object.fields {
                collect_objects(&field.ty, objects);
            }
        }
        Ty::Array(inner) => collect_objects(inner, objects),
        Ty::Union(members) => members
            .iter()
            .for_each(|member| collect_objects(member, objects)),
        Ty::Named(_) | Ty::Literal(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SOURCE: &str = r#"
        /** A doc comment with { braces } and 'quotes'. */
        import type { X } from './x';
        export type Kind = 'a' | 'b';
        export interface Base { id: number; // trailing comment
          note?: string }
        export interface Thing extends Base {
          kind: Kind;
          tags?: string[] | null;
          inner: { size: number; label?: string }[];
          [key: string]: unknown;
        }
        export type Event =
          | { type: 'one'; n?: number }
          | { type: 'two'; text: string };
    "#;

    #[test]
    fn declarations_are_read() {
        let declared = parse(SOURCE).unwrap();
        assert_eq!(
            declared.keys().collect::<Vec<_>>(),
            ["Base", "Event", "Kind", "Thing"]
        );
        let Ty::Object(thing) = &declared["Thing"] else {
            panic!()
        };
        assert!(thing.open);
        assert_eq!(thing.extends, ["Base"]);
        assert_eq!(thing.fields[2].name, "inner");
        let Ty::Union(events) = &declared["Event"] else {
            panic!()
        };
        let Ty::Object(two) = &events[1] else {
            panic!()
        };
        assert_eq!(two.id, "Event('two')");
    }

    #[test]
    fn mismatches_are_named() {
        let declared = parse(SOURCE).unwrap();
        let mut checker = Checker::new(&declared);
        checker.check_named(
            &json!({"id": 1, "kind": "c", "inner": [{"size": 1, "colour": "red"}], "more": 1}),
            "Thing",
        );
        checker.check_named(&json!({"type": "two"}), "Event");
        checker.check_named(&json!({"type": "one", "n": 1}), "Event");
        assert_eq!(
            checker.errors,
            [
                "Thing.inner[0].colour: sent by the server, not declared in Thing.inner (types.ts)",
                "Thing.kind: \"c\" where types.ts says 'a' | 'b'",
                "Event.text: required by Event('two') (types.ts), not sent by the server",
            ]
        );
        assert_eq!(
            checker.never_sent(),
            [
                "Base.note",
                "Event('two').text",
                "Thing.tags",
                "Thing.inner.label"
            ]
        );
    }
}
