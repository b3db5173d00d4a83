//! Parsing of `#[event(...)]` and `#[handler(...)]` arguments into plain data
//! (`ast` builds the typed input from it). Only syntax is checked here: a
//! key that is unknown, repeated or of the wrong kind of value; every rule
//! about the values lives in `valid`.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Attribute, LitInt, LitStr, Token};

/// The keys of `#[event(...)]`, merged over every `#[event]` attribute.
pub struct EventArgs {
    pub name: Option<LitStr>,
    pub source: Option<LitStr>,
    /// `validate = path::to::function`
    pub validate: Option<syn::Path>,
    /// `version = N`: the schema's version, which replaces the fingerprint
    /// computed from the fields.
    pub version: Option<LitInt>,
    /// Where to point "missing name" errors when there is an attribute.
    pub first_attr: Option<TokenStream>,
    /// Whether an error already covers a missing name (a `name` key with a
    /// wrong value, a bare `#[event]`): "missing name" would repeat it.
    pub name_reported: bool,
}

/// The keys of `#[handler(...)]`.
#[derive(Default)]
pub struct HandlerArgs {
    pub name: Option<LitStr>,
    pub priority: Option<i32>,
    /// `emits = [EventType, ...]`: the events its calls may emit.
    pub emits: Option<Vec<syn::Type>>,
}

const EVENT_KEYS: &str = "expected `name = \"area.happened\"`, `source = \"component\"`, `validate = path::to::function` or `version = <integer>`";
const HANDLER_KEYS: &str =
    "expected `priority = <i32>`, `name = \"...\"` or `emits = [EventType, ...]`";
const EMITS: &str = "expected `emits = [EventType, ...]`, the event types this handler emits \
                     (`emits = []` if none)";

/// The keys of every `#[event]` attribute, and the errors of those that
/// were wrong (one per mistake: a wrong key does not hide the next).
pub fn parse_event_args(attrs: &[Attribute]) -> (EventArgs, Option<syn::Error>) {
    let mut args = EventArgs {
        name: None,
        source: None,
        validate: None,
        version: None,
        first_attr: None,
        name_reported: false,
    };
    let mut errors: Option<syn::Error> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
        args.first_attr
            .get_or_insert_with(|| attr.to_token_stream());
        if let syn::Meta::Path(path) = &attr.meta {
            push(
                &mut errors,
                syn::Error::new_spanned(
                    path,
                    "`#[event]` needs arguments: write `#[event(name = \"area.happened\")]`",
                ),
            );
            args.name_reported = true;
            continue;
        }
        let mut key_errors = None;
        let result = attr.parse_nested_meta(each_key(&mut key_errors, |meta| {
            if meta.path.is_ident("validate") {
                let input = meta
                    .value()
                    .map_err(|_| meta.error("expected `validate = path::to::function`"))?;
                let path: syn::Path = input.parse().map_err(|err| {
                    syn::Error::new(
                        err.span(),
                        "expected a function path: `validate = path::to::function` \
                         (a `fn(&Self) -> Result<(), E: Display>`)",
                    )
                })?;
                if args.validate.replace(path).is_some() {
                    return Err(duplicate(&meta.path, "event"));
                }
                return Ok(());
            }
            if meta.path.is_ident("version") {
                let input = meta.value().map_err(|_| {
                    meta.error("expected `version = <integer>`, e.g. `version = 2`")
                })?;
                let version: LitInt = input.parse().map_err(|err| {
                    syn::Error::new(
                        err.span(),
                        "expected an integer schema version, e.g. `version = 2`",
                    )
                })?;
                if args.version.replace(version).is_some() {
                    return Err(duplicate(&meta.path, "event"));
                }
                return Ok(());
            }
            let slot = if meta.path.is_ident("name") {
                args.name_reported = true;
                &mut args.name
            } else if meta.path.is_ident("source") {
                &mut args.source
            } else {
                return Err(meta.error(format_args!(
                    "unknown key `{}` in #[event(...)]; {EVENT_KEYS}",
                    path_text(&meta.path)
                )));
            };
            let key = path_text(&meta.path);
            let example = if key == "name" {
                "\"area.happened\""
            } else {
                "\"component\""
            };
            let value = string_value(meta, &key, example)?;
            if slot.is_some() {
                return Err(syn::Error::new(
                    meta.path.span(),
                    format_args!(
                        "duplicate key `{}` in #[event(...)]; give it once",
                        path_text(&meta.path)
                    ),
                ));
            }
            *slot = Some(value);
            Ok(())
        }));
        if let Some(err) = key_errors {
            push(&mut errors, err);
        }
        if let Err(err) = result {
            push(&mut errors, err);
        }
    }
    (args, errors)
}

/// The keys of `#[handler(...)]`, and the errors of those that were wrong
/// (one per mistake: a wrong key does not hide the next).
pub fn parse_handler_args(tokens: TokenStream) -> (HandlerArgs, Option<syn::Error>) {
    let mut args = HandlerArgs::default();
    let mut errors = None;
    let parser = syn::meta::parser(each_key(&mut errors, |meta| {
        if meta.path.is_ident("name") {
            let value = string_value(meta, "name", "\"audit\"")?;
            if args.name.replace(value).is_some() {
                return Err(duplicate(&meta.path, "handler"));
            }
            Ok(())
        } else if meta.path.is_ident("priority") {
            let input = meta.value().map_err(|_| {
                meta.error("expected `priority = <i32>`, e.g. `priority = 10` (higher runs first)")
            })?;
            let negative = input.parse::<Option<Token![-]>>()?.is_some();
            let lit: LitInt = input.parse().map_err(|err| {
                syn::Error::new(
                    err.span(),
                    "expected an integer priority, e.g. `priority = 10` (higher runs first)",
                )
            })?;
            let digits = lit.base10_digits();
            let text = if negative {
                format!("-{digits}")
            } else {
                digits.to_owned()
            };
            if !matches!(lit.suffix(), "" | "i32") {
                return Err(syn::Error::new(
                    lit.span(),
                    format_args!(
                        "a priority is an i32: write it without a suffix, `priority = {text}`"
                    ),
                ));
            }
            let value: i32 = text.parse().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    format_args!("priority `{text}` does not fit in an i32"),
                )
            })?;
            if args.priority.replace(value).is_some() {
                return Err(duplicate(&meta.path, "handler"));
            }
            Ok(())
        } else if meta.path.is_ident("emits") {
            let input = meta.value().map_err(|_| meta.error(EMITS))?;
            // The list is parsed on its own (not through a nested buffer of
            // `input`), so a bad list is one error, ours, not also syn's
            // "unexpected token".
            let list = match input.parse::<proc_macro2::TokenTree>() {
                Ok(proc_macro2::TokenTree::Group(group))
                    if group.delimiter() == proc_macro2::Delimiter::Bracket =>
                {
                    group
                }
                Ok(other) => return Err(syn::Error::new(other.span(), EMITS)),
                Err(err) => return Err(syn::Error::new(err.span(), EMITS)),
            };
            let types = syn::punctuated::Punctuated::<syn::Type, Token![,]>::parse_terminated
                .parse2(list.stream())
                .map_err(|err| syn::Error::new(err.span(), EMITS))?;
            if args.emits.replace(types.into_iter().collect()).is_some() {
                return Err(duplicate(&meta.path, "handler"));
            }
            Ok(())
        } else {
            Err(meta.error(format_args!(
                "unknown key `{}` in #[handler(...)]; {HANDLER_KEYS}",
                path_text(&meta.path)
            )))
        }
    }));
    let result = parser.parse2(tokens);
    if let Err(err) = result {
        push(&mut errors, err);
    }
    (args, errors)
}

/// Wraps the parser of one key: its error is recorded, and the rest of
/// that key's value is skipped (to the next comma outside any brackets), so
/// that the keys after it are still parsed and checked.
fn each_key<'e>(
    errors: &'e mut Option<syn::Error>,
    mut key: impl FnMut(&syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> + 'e,
) -> impl FnMut(syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> + 'e {
    move |meta| {
        if let Err(err) = key(&meta) {
            push(errors, err);
            while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
                meta.input.parse::<proc_macro2::TokenTree>()?;
            }
        }
        Ok(())
    }
}

fn string_value(
    meta: &syn::meta::ParseNestedMeta<'_>,
    key: &str,
    example: &str,
) -> syn::Result<LitStr> {
    let input = meta
        .value()
        .map_err(|_| meta.error(format_args!("expected `{key} = {example}`")))?;
    input.parse::<LitStr>().map_err(|err| {
        syn::Error::new(
            err.span(),
            format_args!("expected a string literal: `{key} = {example}`"),
        )
    })
}

fn duplicate(path: &syn::Path, attr: &str) -> syn::Error {
    syn::Error::new(
        path.span(),
        format_args!(
            "duplicate key `{}` in #[{attr}(...)]; give it once",
            path_text(path)
        ),
    )
}

fn path_text(path: &syn::Path) -> String {
    quote::quote!(#path).to_string().replace(' ', "")
}

pub fn push(errors: &mut Option<syn::Error>, err: syn::Error) {
    match errors {
        Some(existing) => existing.combine(err),
        None => *errors = Some(err),
    }
}
