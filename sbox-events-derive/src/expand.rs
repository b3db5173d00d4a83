//! Code generation. Generated code names everything by absolute path
//! (`::core`, `::sbox_events`) so user items cannot shadow it; what users must
//! not touch lives under `::sbox_events::__private`.

use crate::attr::{self, HandlerArgs};
use crate::valid;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, ItemFn, ReturnType};

pub fn derive_event(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = None;
    if let Err(err) = valid::event_shape(input) {
        attr::push(&mut errors, err);
    }
    let args = match attr::parse_event_args(&input.attrs) {
        Ok(args) => Some(args),
        Err(err) => {
            attr::push(&mut errors, err);
            None
        }
    };
    if let Some(args) = &args {
        match &args.name {
            Some(name) => {
                if let Err(err) = valid::event_name(name) {
                    attr::push(&mut errors, err);
                }
            }
            None => {
                let message = "missing event name: add `#[event(name = \"area.happened\")]` \
                               (lowercase dotted, e.g. \"subscription.fetched\")";
                let err = match &args.first_attr {
                    Some(attr) => syn::Error::new_spanned(attr, message),
                    None => syn::Error::new(input.ident.span(), message),
                };
                attr::push(&mut errors, err);
            }
        }
        if let Some(source) = &args.source
            && let Err(err) = valid::event_source(source)
        {
            attr::push(&mut errors, err);
        }
    }
    let (name, source, validate) = match (errors, args) {
        (
            None,
            Some(attr::EventArgs {
                name: Some(name),
                source,
                validate,
                ..
            }),
        ) => (name, source, validate),
        (Some(err), _) => return Err(err),
        // Unreachable: a missing name or unparsable attribute pushed an error.
        (None, _) => return Err(syn::Error::new(input.ident.span(), "invalid #[event(...)]")),
    };

    let ident = &input.ident;
    let source = match source {
        Some(source) => quote!(#source),
        None => quote!(::core::env!("CARGO_PKG_NAME")),
    };
    let fields = fields(input);
    // Spanned at the path: a wrong signature is reported there.
    let validate = validate.map(|path| {
        quote_spanned! {path.span()=>
            fn validate(&self) -> ::core::result::Result<(), ::std::string::String> {
                #path(self).map_err(|err| ::std::string::ToString::to_string(&err))
            }
        }
    });
    // Spanned at the type's name: when the struct lacks `Serialize`, `Send`...
    // the bound error points at the struct, not at the derive.
    let event_impl = quote_spanned! {ident.span()=>
        impl ::sbox_events::Event for #ident {
            const NAME: &'static str = #name;
            const SOURCE: &'static str = #source;
            const __FIELDS: &'static [(&'static str, &'static str)] = &[#(#fields),*];
            type __Registry = __SboxEventsRegistry;
            #validate
            #[inline]
            fn __slot() -> &'static ::sbox_events::__private::EventSlot<Self> {
                &__SBOX_EVENTS_SLOT
            }
        }
    };
    Ok(quote! {
        const _: () = {
            // A local newtype per event: inventory's `collect!` implements a
            // foreign trait, so the collected type must belong to this crate.
            // `repr(transparent)`: `__private::registration` relies on it.
            #[doc(hidden)]
            #[repr(transparent)]
            pub struct __SboxEventsRegistry(::sbox_events::__private::HandlerRecord<#ident>);

            ::sbox_events::__private::inventory::collect!(__SboxEventsRegistry);

            // SAFETY: a `repr(transparent)` wrapper of `HandlerRecord<#ident>`.
            unsafe impl ::sbox_events::__private::HandlerRegistry<#ident> for __SboxEventsRegistry {
                #[inline]
                fn record(&self) -> &::sbox_events::__private::HandlerRecord<#ident> {
                    &self.0
                }
            }

            // Non-generic on purpose: a static inside a generic fn would be
            // shared by every event type.
            static __SBOX_EVENTS_SLOT: ::sbox_events::__private::EventSlot<#ident> =
                ::sbox_events::__private::EventSlot::new();

            #event_impl

            ::sbox_events::__private::inventory::submit! {
                ::sbox_events::__private::event_meta::<#ident>()
            }
        };
    })
}

/// `("name", "Type")` per field, as written; tuple fields are named `0`, `1`...
fn fields(input: &DeriveInput) -> Vec<TokenStream> {
    let syn::Data::Struct(data) = &input.data else {
        return Vec::new();
    };
    data.fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| i.to_string(), |ident| ident.unraw().to_string());
            let ty = &field.ty;
            let ty = quote!(#ty).to_string().replace(' ', "");
            quote!((#name, #ty))
        })
        .collect()
}

pub fn handler(args: &HandlerArgs, func: &ItemFn) -> syn::Result<TokenStream> {
    let sig = valid::handler_signature(func)?;
    let fn_ident = &func.sig.ident;
    let fn_name = fn_ident.to_string();
    let event = sig.event;

    let path = quote!(::core::concat!(::core::module_path!(), "::", #fn_name));
    let name = match &args.name {
        Some(name) => {
            if name.value().trim().is_empty() {
                return Err(syn::Error::new(
                    name.span(),
                    "handler name must not be empty; leave `name` out to use the function's path",
                ));
            }
            quote!(#name)
        }
        None => path.clone(),
    };
    let priority = args.priority.unwrap_or(0);

    // Each piece is spanned at the user's tokens it depends on, so type errors
    // point at the parameter or return type that is wrong.
    let call = match sig.context {
        Some(ctx_ty) => {
            let ctx = quote_spanned!(ctx_ty.span()=> ctx);
            quote!(#fn_ident(event, #ctx))
        }
        None => quote!(#fn_ident(event)),
    };
    // The result gets the return type's span, so "cannot be returned by an
    // event handler" points at the return type.
    let result = match &func.sig.output {
        ReturnType::Default => quote!(result),
        ReturnType::Type(_, ty) => quote_spanned!(ty.span()=> result),
    };
    // Spanned at the event type: "`X` is not an event" points there.
    let record = quote! {
        ::sbox_events::__private::HandlerRecord::new(
            #name,
            #path,
            #priority,
            __sbox_events_handler,
        )
    };
    let submit = quote_spanned! {event.span()=>
        ::sbox_events::__private::inventory::submit! {
            ::sbox_events::__private::registration::<#event>(#record)
        }
    };

    Ok(quote! {
        #func

        const _: () = {
            fn __sbox_events_handler(
                event: &#event,
                ctx: &::sbox_events::EventContext<'_>,
            ) -> ::core::result::Result<(), ::sbox_events::HandlerError> {
                let _ = ctx;
                let #result = #call;
                ::sbox_events::IntoHandlerResult::into_handler_result(#result)
            }

            #submit
        };
    })
}
