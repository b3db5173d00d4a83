//! The rules of `#[derive(Event)]`.

use crate::ast::EventInput;
use crate::attr::push;
use syn::{Data, DeriveInput, GenericArgument, GenericParam, LitStr, PathArguments, Type};

impl EventInput<'_> {
    /// The rules about the attributes' values: the name's grammar, the
    /// source and the version.
    pub fn validate(&self) -> syn::Result<()> {
        let mut errors = None;
        if let Err(err) = event_name(&self.name) {
            push(&mut errors, err);
        }
        if let Some(source) = &self.source
            && let Err(err) = event_source(source)
        {
            push(&mut errors, err);
        }
        if let Some(version) = &self.version
            && let Err(err) = schema_version(version)
        {
            push(&mut errors, err);
        }
        errors.map_or(Ok(()), Err)
    }
}

/// `version = N`: a positive `u32`, without a suffix.
fn schema_version(lit: &syn::LitInt) -> syn::Result<u32> {
    let fail = || {
        syn::Error::new(
            lit.span(),
            format_args!(
                "the schema version must be a whole number from 1 to {}, e.g. `version = 2`",
                u32::MAX
            ),
        )
    };
    if !lit.suffix().is_empty() {
        return Err(fail());
    }
    match lit.base10_parse::<u32>() {
        Ok(0) | Err(_) => Err(fail()),
        Ok(version) => Ok(version),
    }
}

impl EventInput<'_> {
    /// The schema fingerprint: `v<N>` when a version is given, else 16 hex
    /// digits of a 64-bit FNV-1a hash of the name and of each field's name
    /// and type as written (so renaming, retyping, adding or reordering a
    /// field changes it; comments and attributes do not).
    pub fn fingerprint(&self) -> String {
        if let Some(version) = self.version.as_ref().and_then(|v| schema_version(v).ok()) {
            return format!("v{version}");
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for &byte in bytes {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            // A separator no name or type contains.
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        };
        feed(self.name.value().as_bytes());
        for field in &self.fields {
            feed(field.name.as_bytes());
            feed(field.type_text().as_bytes());
        }
        format!("{hash:016x}")
    }
}

/// Field types that can never be shared across threads. Checked on the raw
/// input, so that a wrong attribute does not hide them; when there is one,
/// the struct cannot be an event at all and no fallback impl is generated
/// for it (its `Send + Sync` bounds would only repeat the error).
pub fn event_fields(input: &DeriveInput) -> syn::Result<()> {
    let mut errors = None;
    if let Data::Struct(data) = &input.data {
        for field in &data.fields {
            field_type(&field.ty, false, &mut errors);
        }
    }
    errors.map_or(Ok(()), Err)
}

const FIELD_PREFIX: &str = "this field's type";

/// Field types that serde handles but that keep an event from being
/// `Send + Sync`, found by path (also inside generic arguments:
/// `Vec<Rc<T>>`): each gets one error at the field with the type to use
/// instead. `Rc` and `rc::Weak` are never `Send`; `Cell` and `RefCell` are
/// not `Sync`, but are fine behind a `Mutex` (`locked`: an enclosing type is
/// a `Mutex`, with no `Arc` or `Weak` between it and here:
/// `Mutex<Vec<Cell<u32>>>` is `Sync`, `Mutex<Arc<Cell<u32>>>` is not). A
/// macro cannot resolve names, so only paths that may be `std`'s are
/// matched: the bare name (`Cell`, as imported), the module and name
/// (`cell::Cell`), or the full path (`std::cell::Cell`, through `core` or
/// `alloc` too). A type of the user's own with one of these names is not matched when written with
/// another path (`sheet::Cell`, `crate::cell::Cell`); the message says so.
/// Anything else that is not `Send + Sync` is still caught by the trait
/// bounds, at the struct's name; types serde cannot handle (references, raw
/// pointers) by serde's derive.
fn field_type(ty: &Type, locked: bool, errors: &mut Option<syn::Error>) {
    let problem = match ty {
        Type::Path(path) => {
            let segments = &path.path.segments;
            let problem = std_path(&path.path).and_then(|(module, name)| {
                match (module, name.to_string().as_str()) {
                    (Some("rc") | None, "Rc") => Some(
                        "is `Rc`, which cannot be shared between threads, and handlers run on \
                         any thread: use `std::sync::Arc`",
                    ),
                    (Some("rc"), "Weak") => Some(
                        "is `rc::Weak`, which cannot be shared between threads: use \
                         `std::sync::Weak`",
                    ),
                    (Some("cell") | None, "Cell" | "RefCell") if !locked => Some(
                        "has unsynchronized interior mutability, and every handler (on any \
                         thread) shares the event: use an atomic, `std::sync::Mutex` or \
                         `RwLock`, or `std::sync::OnceLock`",
                    ),
                    _ => None,
                }
            });
            // A bare name or `module::Name` may be a type of the user's
            // own: say how to write it so that it is not taken for std's.
            let problem = problem.map(|problem| match segments.len() {
                1 => format!(
                    "{problem} (if this is a type of your own with the same name, write it \
                     with its path, e.g. `crate::module::{}`)",
                    segments[0].ident
                ),
                2 => format!(
                    "{problem} (if this is a type of your own with the same name, write it \
                     with its path from the crate root, e.g. `crate::{}::{}`)",
                    segments[0].ident, segments[1].ident
                ),
                _ => problem.to_owned(),
            });
            if problem.is_none() {
                // Inside a `Mutex` (anyone's: std's, parking_lot's,
                // tokio's all share a `Send` value), `Cell` is safe; inside
                // an `Arc` (or `sync::Weak`) again not, even under a
                // `Mutex`: `Arc<Cell<T>>` is not `Send`.
                let locked = match segments.last() {
                    Some(last) if last.ident == "Arc" || last.ident == "Weak" => false,
                    Some(last) if last.ident == "Mutex" => true,
                    _ => locked,
                };
                for segment in segments {
                    if let PathArguments::AngleBracketed(args) = &segment.arguments {
                        for arg in &args.args {
                            if let GenericArgument::Type(inner) = arg {
                                field_type(inner, locked, errors);
                            }
                        }
                    }
                }
            }
            problem
        }
        Type::Array(syn::TypeArray { elem, .. })
        | Type::Slice(syn::TypeSlice { elem, .. })
        | Type::Paren(syn::TypeParen { elem, .. })
        | Type::Group(syn::TypeGroup { elem, .. }) => {
            field_type(elem, locked, errors);
            None
        }
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                field_type(elem, locked, errors);
            }
            None
        }
        _ => None,
    };
    if let Some(problem) = problem {
        push(
            errors,
            syn::Error::new_spanned(ty, format_args!("{FIELD_PREFIX} {problem}")),
        );
    }
}

/// The module (`cell`, `rc`) and the name of a path that may be `std`'s: a
/// bare name (no module), `module::Name`, or `std::module::Name` (also
/// through `core` or `alloc`, with or without a leading `::`). Any other path
/// names a type of the user's own.
fn std_path(path: &syn::Path) -> Option<(Option<&'static str>, &syn::Ident)> {
    let idents: Vec<&syn::Ident> = path.segments.iter().map(|s| &s.ident).collect();
    let module = |ident: &syn::Ident| ["cell", "rc"].into_iter().find(|m| ident == m);
    match idents.as_slice() {
        [name] if path.leading_colon.is_none() => Some((None, name)),
        [module_ident, name] if path.leading_colon.is_none() => {
            Some((Some(module(module_ident)?), name))
        }
        [krate, module_ident, name] if ["std", "core", "alloc"].iter().any(|k| *krate == k) => {
            Some((Some(module(module_ident)?), name))
        }
        _ => None,
    }
}

/// `#[derive(Event)]` is for concrete structs. Checked on the raw input, so
/// its errors combine with those of the attributes.
pub fn event_shape(input: &DeriveInput) -> syn::Result<()> {
    let mut errors = None;
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(data) => push(
            &mut errors,
            syn::Error::new(
                data.enum_token.span,
                "#[derive(Event)] supports structs only; wrap the enum in a struct, \
                 e.g. `struct StatusChanged { status: Status }`",
            ),
        ),
        Data::Union(data) => push(
            &mut errors,
            syn::Error::new(
                data.union_token.span,
                "#[derive(Event)] supports structs only; use a struct with named fields",
            ),
        ),
    }
    for param in &input.generics.params {
        let err = match param {
            GenericParam::Lifetime(_) => syn::Error::new_spanned(
                param,
                "events must be `'static` and cannot borrow: use owned fields \
                 (`String` instead of `&str`) and remove the lifetime parameter",
            ),
            _ => syn::Error::new_spanned(
                param,
                "events cannot be generic: each event type gets its own handler registry \
                 at link time; declare one concrete struct per event",
            ),
        };
        push(&mut errors, err);
    }
    errors.map_or(Ok(()), Err)
}

/// Event names are lowercase dotted paths: `area.happened`, `config.built`.
fn event_name(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    let problem = name_problem(&name);
    match problem {
        None => Ok(()),
        Some(problem) => Err(syn::Error::new(
            lit.span(),
            format_args!(
                "invalid event name \"{name}\": {problem}; names are lowercase dotted \
                 segments of [a-z][a-z0-9_]*, at least two, e.g. \"subscription.fetched\""
            ),
        )),
    }
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    let segments: Vec<&str> = name.split('.').collect();
    if segments.len() < 2 {
        return Some("it has one segment, it needs at least two".into());
    }
    for segment in segments {
        let mut chars = segment.chars();
        match chars.next() {
            None => return Some("it has an empty segment".into()),
            Some(c) if !c.is_ascii_lowercase() => {
                return Some(format!(
                    "segment \"{segment}\" must start with a lowercase ASCII letter"
                ));
            }
            Some(_) => {}
        }
        if let Some(c) =
            chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Some(format!("segment \"{segment}\" contains {c:?}"));
        }
    }
    None
}

fn event_source(lit: &LitStr) -> syn::Result<()> {
    let source = lit.value();
    if source.trim().is_empty() || source.chars().any(char::is_control) {
        return Err(syn::Error::new(
            lit.span(),
            "`source` must be a non-empty name without control characters, \
             e.g. `source = \"subscription_manager\"`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::name_problem;

    #[test]
    fn accepts_dotted_lowercase_names() {
        for name in ["subscription.fetched", "a.b", "config.v2_built.x9"] {
            assert_eq!(name_problem(name), None, "{name}");
        }
    }

    #[test]
    fn explains_bad_names() {
        let cases = [
            ("", "it is empty"),
            ("fetched", "it has one segment, it needs at least two"),
            ("a..b", "it has an empty segment"),
            ("a.", "it has an empty segment"),
            (
                "Sub.fetched",
                "segment \"Sub\" must start with a lowercase ASCII letter",
            ),
            (
                "sub.9x",
                "segment \"9x\" must start with a lowercase ASCII letter",
            ),
            ("sub.fetch-ed", "segment \"fetch-ed\" contains '-'"),
            ("sub.fetchéd", "segment \"fetchéd\" contains 'é'"),
        ];
        for (name, problem) in cases {
            assert_eq!(name_problem(name).as_deref(), Some(problem), "{name}");
        }
    }
}
