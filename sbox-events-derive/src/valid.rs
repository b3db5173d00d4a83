//! Every rule the macros enforce, each ending in an error that is spanned at
//! the offending tokens and says what to write instead. Code generation
//! (`expand`) runs only on input that passed all of them.

use crate::ast::{EventInput, HandlerInput};
use crate::attr::push;
use crate::written::written;
use syn::{
    Data, DeriveInput, FnArg, GenericArgument, GenericParam, ItemFn, LitStr, PathArguments, Type,
};

impl EventInput<'_> {
    /// The rules about the values: the name's grammar, the source, and field
    /// types that can never be shared across threads.
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
        for field in &self.fields {
            field_type(field.ty, &mut errors);
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

impl EventInput<'_> {
    /// Whether every field type could be part of an event: if not, the
    /// struct cannot be one at all, and no fallback impl is generated for it
    /// (its `Send + Sync` bounds would only repeat the error).
    pub fn fields_can_be_events(&self) -> bool {
        let mut errors = None;
        for field in &self.fields {
            field_type(field.ty, &mut errors);
        }
        errors.is_none()
    }
}

const FIELD_PREFIX: &str = "this field's type";

/// Field types that serde handles but that are never `Send + Sync`, found by
/// path (also inside generic arguments: `Vec<Rc<T>>`): each gets one error
/// at the field with the type to use instead. A macro cannot resolve names,
/// so only paths that are `std`'s are matched: the bare name (`Cell`, as
/// imported), the module and name (`cell::Cell`), or the full path
/// (`std::cell::Cell`, through `core` or `alloc` too). A type of the user's
/// own with one of these names is written with its path (`sheet::Cell`) and
/// is not matched; the message says so. Anything else that is not
/// `Send + Sync` is still caught by the trait bounds, at the struct's name;
/// types serde cannot handle (references, raw pointers) by serde's derive.
fn field_type(ty: &Type, errors: &mut Option<syn::Error>) {
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
                    (Some("cell") | None, "Cell" | "RefCell") => Some(
                        "has unsynchronized interior mutability, and every handler (on any \
                         thread) shares the event: use an atomic, `std::sync::Mutex` or \
                         `RwLock`, or `std::sync::OnceLock`",
                    ),
                    _ => None,
                }
            });
            let problem = problem.map(|problem| match segments.len() {
                // A bare name may be a type of the user's own: say how to
                // tell it apart.
                1 => format!(
                    "{problem} (if this is a type of your own with the same name, write it \
                     with its path, e.g. `crate::module::{}`)",
                    segments[0].ident
                ),
                _ => problem.to_owned(),
            });
            if problem.is_none() {
                for segment in segments {
                    if let PathArguments::AngleBracketed(args) = &segment.arguments {
                        for arg in &args.args {
                            if let GenericArgument::Type(inner) = arg {
                                field_type(inner, errors);
                            }
                        }
                    }
                }
            }
            problem
        }
        Type::Array(array) => {
            field_type(&array.elem, errors);
            None
        }
        Type::Slice(slice) => {
            field_type(&slice.elem, errors);
            None
        }
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                field_type(elem, errors);
            }
            None
        }
        Type::Paren(inner) => {
            field_type(&inner.elem, errors);
            None
        }
        Type::Group(inner) => {
            field_type(&inner.elem, errors);
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

/// What `#[handler]` needs from a valid signature.
pub struct HandlerSignature<'a> {
    /// `E` in the first parameter `&E`.
    pub event: &'a Type,
    /// The type of the context parameter, when there is one.
    pub context: Option<&'a Type>,
    /// `T` of each resource parameter `&T`, in order.
    pub resources: Vec<&'a Type>,
    /// `async fn`: registered as an async handler.
    pub is_async: bool,
}

const SHAPE: &str = "write `fn name(event: &MyEvent)`, \
                     `fn name(event: &MyEvent, ctx: &EventContext)`, \
                     and any resources after them: `storage: &Storage`";

/// The `impl Trait` a parameter's type is, or refers to (`&impl Trait`).
fn impl_trait(ty: &Type) -> Option<&syn::TypeImplTrait> {
    match ty {
        Type::ImplTrait(found) => Some(found),
        Type::Reference(r) => impl_trait(&r.elem),
        Type::Paren(p) => impl_trait(&p.elem),
        Type::Group(g) => impl_trait(&g.elem),
        _ => None,
    }
}

/// Whether `ty` is `&EventContext` written as this crate's (`EventContext`
/// or `sbox_events::EventContext`, with or without a lifetime): after a
/// resource it is a mistake then, where a type of the user's own of that
/// name (`&app::EventContext`) may be a resource.
fn is_this_crates_context(ty: &Type) -> bool {
    let Type::Reference(r) = ty else {
        return false;
    };
    let Type::Path(path) = &*r.elem else {
        return false;
    };
    let names: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    path.qself.is_none()
        && matches!(
            names.iter().map(String::as_str).collect::<Vec<_>>()[..],
            ["EventContext"] | ["sbox_events", "EventContext"]
        )
}

/// Whether `ty` is `&EventContext` (any path ending in `EventContext`, with
/// or without a lifetime): the second parameter is the context then, and a
/// resource otherwise.
fn is_context(ty: &Type) -> bool {
    let Type::Reference(r) = ty else {
        return false;
    };
    match &*r.elem {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "EventContext"),
        _ => false,
    }
}

impl<'a> HandlerInput<'a> {
    /// The signature's rules and the handler's own name.
    pub fn validate(&self) -> syn::Result<HandlerSignature<'a>> {
        let mut errors = None;
        if let Some(name) = &self.name
            && name.value().trim().is_empty()
        {
            push(
                &mut errors,
                syn::Error::new(
                    name.span(),
                    "handler name must not be empty; leave `name` out to use the function's path",
                ),
            );
        } else if let Some(name) = &self.name
            && name.value().chars().any(char::is_control)
        {
            push(
                &mut errors,
                syn::Error::new(
                    name.span(),
                    "handler name must not contain control characters (it is shown in logs \
                     and reports), e.g. `name = \"audit\"`",
                ),
            );
        }
        if let Some(emits) = &self.emits {
            let mut seen: Vec<String> = Vec::new();
            for ty in emits {
                let text = quote::quote!(#ty).to_string().replace(' ', "");
                if seen.contains(&text) {
                    push(
                        &mut errors,
                        syn::Error::new_spanned(
                            ty,
                            format_args!("`{text}` is listed twice in `emits`; list it once"),
                        ),
                    );
                } else {
                    seen.push(text);
                }
            }
        }
        match (handler_signature(self.func), errors) {
            (Ok(sig), None) => Ok(sig),
            (Ok(_), Some(err)) => Err(err),
            (Err(mut err), Some(more)) => {
                err.combine(more);
                Err(err)
            }
            (Err(err), None) => Err(err),
        }
    }
}

fn handler_signature(func: &ItemFn) -> syn::Result<HandlerSignature<'_>> {
    let sig = &func.sig;
    let mut errors = None;
    if let Some(receiver) = sig.receiver() {
        push(
            &mut errors,
            syn::Error::new_spanned(
                receiver,
                "#[handler] goes on a free function, not a method: \
                 move it out of the `impl` block and drop `self`",
            ),
        );
    }
    if let syn::Safety::Unsafe(token) = &sig.safety {
        push(
            &mut errors,
            syn::Error::new_spanned(
                token,
                "handlers cannot be `unsafe fn`: the bus calls them with no extra \
                 guarantees; make the function safe",
            ),
        );
    }
    for param in &sig.generics.params {
        if !matches!(param, GenericParam::Lifetime(_)) {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    param,
                    "handlers cannot be generic: a handler is registered for one concrete \
                     event type; name it, e.g. `fn on_fetched(event: &SubscriptionFetched)`",
                ),
            );
        }
    }
    if let Some(variadic) = &sig.variadic {
        push(
            &mut errors,
            syn::Error::new_spanned(variadic, format_args!("handlers are not variadic; {SHAPE}")),
        );
    }

    let typed: Vec<&syn::PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(pat) => Some(pat),
            FnArg::Receiver(_) => None,
        })
        .collect();
    if typed.is_empty() && sig.receiver().is_none() {
        push(
            &mut errors,
            syn::Error::new(
                sig.paren_token.span.join(),
                format_args!("a handler takes the event it handles; {SHAPE}"),
            ),
        );
    }
    let event = typed.first().and_then(|arg| match &*arg.ty {
        Type::Reference(r) if r.mutability.is_none() => Some(&*r.elem),
        Type::Reference(r) => {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    r,
                    "handlers get a shared reference: every handler sees the same event; \
                     write `&` instead of `&mut`",
                ),
            );
            None
        }
        other => {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    other,
                    format_args!("take the event by reference: `&{}`", written(other)),
                ),
            );
            None
        }
    });
    // After the event: the context (if the second parameter is one), then
    // resources, each `&T`.
    let rest = typed.get(1..).unwrap_or(&[]);
    let (context, resource_args) = match rest.split_first() {
        Some((second, after)) if is_context(&second.ty) => (Some(&*second.ty), after),
        _ => (None, rest),
    };
    for arg in &typed {
        if let Some(found) = impl_trait(&arg.ty) {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    found,
                    "handlers cannot be generic, and `impl Trait` in a parameter makes one: \
                     name the type, e.g. `event: &SubscriptionFetched`, `store: &dyn Store`",
                ),
            );
        }
    }
    let mut resources = Vec::new();
    for arg in resource_args {
        if is_this_crates_context(&arg.ty) {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    &arg.ty,
                    "the context goes second, right after the event: \
                     `fn name(event: &MyEvent, ctx: &EventContext, storage: &Storage)`",
                ),
            );
            continue;
        }
        match &*arg.ty {
            Type::Reference(r) if r.mutability.is_none() => resources.push(&*r.elem),
            Type::Reference(r) => {
                let inner = &r.elem;
                push(
                    &mut errors,
                    syn::Error::new_spanned(
                        r,
                        format_args!(
                            "resources are shared by every handler on every thread: take \
                             `&{}` and use interior mutability (`Mutex`, atomics) to change it",
                            written(inner)
                        ),
                    ),
                );
            }
            other if is_context(&syn::parse_quote!(&#other)) => push(
                &mut errors,
                syn::Error::new_spanned(
                    other,
                    "take the context by reference: `ctx: &EventContext`",
                ),
            ),
            other => push(
                &mut errors,
                syn::Error::new_spanned(
                    other,
                    format_args!(
                        "parameters after the event are resources, taken by shared reference: \
                         `&{}` (the bus owns them; add them with `EventBus::builder().resource(..)`)",
                        written(other)
                    ),
                ),
            ),
        }
    }
    match (errors, event) {
        (Some(err), _) => Err(err),
        (None, Some(event)) => Ok(HandlerSignature {
            event,
            context,
            resources,
            is_async: sig.asyncness.is_some(),
        }),
        (None, None) => Err(syn::Error::new_spanned(&sig.inputs, SHAPE)),
    }
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
