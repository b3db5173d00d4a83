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
        let result = attr.parse_nested_meta(each_key(
            &mut key_errors,
            |meta| {
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
                    return keep_first(&mut args.validate, path, &meta.path, "event");
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
                    return keep_first(&mut args.version, version, &meta.path, "event");
                }
                let slot = if meta.path.is_ident("name") {
                    args.name_reported = true;
                    &mut args.name
                } else if meta.path.is_ident("source") {
                    &mut args.source
                } else {
                    let (err, suggested) =
                        unknown_key(&meta.path, "event", EVENT_KEY_NAMES, EVENT_KEYS);
                    // "Did you mean `name`?" already says the name is missing.
                    args.name_reported |= suggested == Some("name");
                    return Err(err);
                };
                let key = path_text(&meta.path);
                let example = if key == "name" {
                    "\"area.happened\""
                } else {
                    "\"component\""
                };
                let value = string_value(meta, &key, example)?;
                keep_first(slot, value, &meta.path, "event")
            },
            EVENT_KEY_NAMES,
        ));
        if let Some(err) = key_errors {
            push(&mut errors, err);
        }
        if let Err(err) = result {
            // syn gave up on the rest of this attribute (a missing comma):
            // a `name` there may be unread, and "missing name" would be
            // wrong.
            args.name_reported = true;
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
    let parser = syn::meta::parser(each_key(
        &mut errors,
        |meta| {
            if meta.path.is_ident("name") {
                let value = string_value(meta, "name", "\"audit\"")?;
                keep_first(&mut args.name, value, &meta.path, "handler")
            } else if meta.path.is_ident("priority") {
                let input = meta.value().map_err(|_| {
                    meta.error(
                        "expected `priority = <i32>`, e.g. `priority = 10` (higher runs first)",
                    )
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
                // The range first: a suffix is only worth removing from a
                // value that fits.
                let value: i32 = text.parse().map_err(|_| {
                    syn::Error::new(
                        lit.span(),
                        format_args!(
                            "priority `{text}` does not fit in an i32 (from {} to {})",
                            i32::MIN,
                            i32::MAX
                        ),
                    )
                })?;
                if !matches!(lit.suffix(), "" | "i32") {
                    return Err(syn::Error::new(
                        lit.span(),
                        format_args!(
                            "a priority is an i32: write it without a suffix, `priority = {text}`"
                        ),
                    ));
                }
                keep_first(&mut args.priority, value, &meta.path, "handler")
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
                // Parsed inside its brackets, so that a list cut short is an
                // error at its `]` (or at a nested group's closing token).
                let types = emits_list
                    .parse2(proc_macro2::TokenTree::Group(list).into())
                    .map_err(|err| syn::Error::new(err.span(), EMITS))?;
                keep_first(
                    &mut args.emits,
                    types.into_iter().collect(),
                    &meta.path,
                    "handler",
                )
            } else {
                Err(unknown_key(&meta.path, "handler", HANDLER_KEY_NAMES, HANDLER_KEYS).0)
            }
        },
        HANDLER_KEY_NAMES,
    ));
    let result = parser.parse2(tokens);
    if let Err(err) = result {
        push(&mut errors, err);
    }
    (args, errors)
}

/// `[EventType, ...]`.
fn emits_list(
    input: syn::parse::ParseStream<'_>,
) -> syn::Result<syn::punctuated::Punctuated<syn::Type, Token![,]>> {
    let content;
    syn::bracketed!(content in input);
    syn::punctuated::Punctuated::parse_terminated(&content)
}

/// Wraps the parser of one key: its error is recorded, and the rest of
/// that key's value is skipped, up to the comma before the next key (a
/// top-level comma followed by `key =`, by one of `keys` or a near miss of
/// one, or by nothing), so that the keys after it are still parsed and
/// checked while the rest of a wrong value (`emits = A, B`, `Vec<A, B>`)
/// gives no error of its own.
fn each_key<'e>(
    errors: &'e mut Option<syn::Error>,
    mut key: impl FnMut(&syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> + 'e,
    keys: &'static [&'static str],
) -> impl FnMut(syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> + 'e {
    move |meta| {
        if let Err(err) = key(&meta) {
            push(errors, err);
            while !meta.input.is_empty() && !before_next_key(meta.input, keys) {
                meta.input.parse::<proc_macro2::TokenTree>()?;
            }
        }
        Ok(())
    }
}

/// Whether `input` is at the comma that ends a key: see [`each_key`].
fn before_next_key(input: syn::parse::ParseStream<'_>, keys: &'static [&'static str]) -> bool {
    if !input.peek(Token![,]) {
        return false;
    }
    let after = input.fork();
    if after.parse::<Token![,]>().is_err() {
        return false;
    }
    if after.is_empty() {
        return true;
    }
    match after.call(<syn::Ident as syn::ext::IdentExt>::parse_any) {
        Ok(ident) => {
            after.peek(Token![=])
                || closest_key(&syn::ext::IdentExt::unraw(&ident).to_string(), keys).is_some()
        }
        Err(_) => false,
    }
}

const EVENT_KEY_NAMES: &[&str] = &["name", "source", "validate", "version"];
const HANDLER_KEY_NAMES: &[&str] = &["name", "priority", "emits"];

/// "unknown key", with the key it most likely meant when there is one (see
/// [`closest_key`]), which is returned too.
fn unknown_key(
    path: &syn::Path,
    attr: &str,
    names: &'static [&'static str],
    expected: &str,
) -> (syn::Error, Option<&'static str>) {
    let written = path_text(path);
    // Compared by its last segment, unraw: `r#name` and `event::name` mean
    // `name`.
    let last = path.segments.last().map_or_else(String::new, |segment| {
        syn::ext::IdentExt::unraw(&segment.ident).to_string()
    });
    let closest = closest_key(&last, names);
    let message = match closest {
        Some(name) => format!("unknown key `{written}` in #[{attr}(...)]; did you mean `{name}`?"),
        None => format!("unknown key `{written}` in #[{attr}(...)]; {expected}"),
    };
    (syn::Error::new_spanned(path, message), closest)
}

/// The key `written` is or most likely means: the same, at most two letters
/// apart (a typo), or the start of one (`prio`, at least three letters).
fn closest_key(written: &str, names: &'static [&'static str]) -> Option<&'static str> {
    names
        .iter()
        .map(|name| {
            let prefix = written.len() >= 3 && name.starts_with(written);
            let distance = if prefix {
                1
            } else {
                edit_distance(written, name)
            };
            (distance, *name)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Stores a key's value, unless the key was given before: then the first
/// value stays (its checks apply, not the repeat's) and the repeat is the
/// error.
fn keep_first<T>(slot: &mut Option<T>, value: T, path: &syn::Path, attr: &str) -> syn::Result<()> {
    if slot.is_some() {
        return Err(duplicate(path, attr));
    }
    *slot = Some(value);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::{EVENT_KEY_NAMES, HANDLER_KEY_NAMES, closest_key, edit_distance};

    #[test]
    fn suggests_the_key_meant() {
        let cases = [
            ("nme", EVENT_KEY_NAMES, Some("name")),
            ("sorce", EVENT_KEY_NAMES, Some("source")),
            ("ver", EVENT_KEY_NAMES, Some("version")),
            ("prio", HANDLER_KEY_NAMES, Some("priority")),
            ("emit", HANDLER_KEY_NAMES, Some("emits")),
            ("pr", HANDLER_KEY_NAMES, None),
            ("OrderPlaced", HANDLER_KEY_NAMES, None),
            ("validation", EVENT_KEY_NAMES, None),
        ];
        for (written, names, meant) in cases {
            assert_eq!(closest_key(written, names), meant, "{written}");
        }
    }

    #[test]
    fn counts_single_letter_edits() {
        let cases = [
            ("name", "name", 0),
            ("nme", "name", 1),
            ("naem", "name", 2),
            ("sorce", "source", 1),
            ("prority", "priority", 1),
            ("", "emits", 5),
            ("abc", "xyz", 3),
        ];
        for (a, b, distance) in cases {
            assert_eq!(edit_distance(a, b), distance, "{a} -> {b}");
        }
    }
}
