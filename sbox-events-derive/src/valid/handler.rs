//! The rules of `#[handler]`.

use crate::ast::HandlerInput;
use crate::attr::push;
use crate::written::written;
use syn::{FnArg, GenericParam, ItemFn, Type};

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
        // The attributes still on the function are those below this one:
        // another `#[handler]` there would register it a second time.
        for attr in &self.func.attrs {
            if is_handler_attribute(attr.path()) {
                push(
                    &mut errors,
                    syn::Error::new_spanned(
                        attr,
                        "`#[handler]` is written twice on this function, which would register \
                         it twice; remove this one (put its arguments on the other)",
                    ),
                );
            }
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

/// `handler`, `sbox_events::handler` or `::sbox_events::handler` (an
/// import under another name cannot be seen by a macro).
fn is_handler_attribute(path: &syn::Path) -> bool {
    let mut segments = path.segments.iter().map(|s| &s.ident);
    match (segments.next(), segments.next(), segments.next()) {
        (Some(name), None, None) => path.leading_colon.is_none() && name == "handler",
        (Some(krate), Some(name), None) => krate == "sbox_events" && name == "handler",
        _ => false,
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
    // A parameter of `impl Trait` gets one error, about that (below): not
    // also "take it by reference", which would not fix it.
    let event = typed.first().and_then(|arg| match &*arg.ty {
        _ if impl_trait(&arg.ty).is_some() => None,
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
    if let Some(Type::Reference(r)) = context
        && let Some(mutability) = &r.mutability
    {
        push(
            &mut errors,
            syn::Error::new_spanned(
                mutability,
                "every handler of an emit shares its context: take `&EventContext`, not \
                 `&mut`",
            ),
        );
    }
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
        if impl_trait(&arg.ty).is_some() {
            continue;
        }
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

/// `#[handler]` on an item that is not a function: one error at the item's
/// keyword and name.
pub fn not_a_function(item: &syn::Item) -> syn::Error {
    use quote::ToTokens;
    use syn::Item;
    fn pair(keyword: &impl ToTokens, name: &impl ToTokens) -> proc_macro2::TokenStream {
        let mut tokens = keyword.to_token_stream();
        name.to_tokens(&mut tokens);
        tokens
    }
    let (what, head) = match item {
        Item::Struct(i) => ("a struct", pair(&i.struct_token, &i.ident)),
        Item::Enum(i) => ("an enum", pair(&i.enum_token, &i.ident)),
        Item::Union(i) => ("a union", pair(&i.union_token, &i.ident)),
        Item::Const(i) => ("a constant", pair(&i.const_token, &i.ident)),
        Item::Static(i) => ("a static", pair(&i.static_token, &i.ident)),
        Item::Trait(i) => ("a trait", pair(&i.trait_token, &i.ident)),
        Item::Type(i) => ("a type alias", pair(&i.type_token, &i.ident)),
        Item::Mod(i) => ("a module", pair(&i.mod_token, &i.ident)),
        Item::Impl(i) => ("an `impl` block", i.impl_token.to_token_stream()),
        Item::Use(i) => ("a `use` declaration", i.use_token.to_token_stream()),
        other => ("not a function", other.to_token_stream()),
    };
    syn::Error::new_spanned(
        head,
        format_args!(
            "#[handler] goes on a free function, e.g. `fn on_placed(event: &OrderPlaced)`; \
             this is {what}"
        ),
    )
}

/// The error for a function declared without a body (`fn on_placed(..);`),
/// at its `;`. It says where `#[handler]` goes rather than only "add a
/// body": the declaration may sit where a body cannot go (an `extern`
/// block), which a macro cannot see.
pub fn no_body(declared: &syn::ForeignItemFn) -> syn::Error {
    let name = &declared.sig.ident;
    syn::Error::new(
        declared.semi_token.span,
        format_args!(
            "#[handler] goes on a free function with a body, e.g. \
             `fn {name}(event: &MyEvent) {{ ... }}`; this declaration ends with `;`"
        ),
    )
}

/// A bodiless declaration made a function again (its body only panics, and
/// it is never registered: it comes with [`no_body`]'s error), so that its
/// callers compile as far as they can and the compiler adds no error of its
/// own (at module level: in an `extern` block it still says that a body
/// does not go there). Built from its parts, not parsed again: a
/// declaration may say `safe`, which only an `extern` block's may, and is
/// left out here.
pub fn with_body(declared: syn::ForeignItemFn) -> ItemFn {
    let syn::ForeignItemFn {
        mut attrs,
        vis,
        mut sig,
        ..
    } = declared;
    if let syn::Safety::Safe(_) = sig.safety {
        sig.safety = syn::Safety::Default;
    }
    // Its parameters are unused: no warning about that next to the error.
    attrs.insert(0, syn::parse_quote!(#[allow(unused_variables)]));
    ItemFn {
        attrs,
        vis,
        modifiers: syn::FnModifiers::default(),
        sig,
        block: Box::new(syn::parse_quote!({ ::core::unreachable!() })),
    }
}
