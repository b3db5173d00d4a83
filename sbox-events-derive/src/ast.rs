//! A typed view of what the macros are applied to, built from syn. Only
//! syntax is decided here (through `attr`); every rule about the values is
//! in `valid`.

use crate::attr::{self, HandlerArgs};
use syn::{Data, DeriveInput, Ident, ItemFn, LitStr, Type};

/// A struct under `#[derive(Event)]`.
pub struct EventInput<'a> {
    pub ident: &'a Ident,
    /// `#[event(name = "...")]`: required, so never absent here.
    pub name: LitStr,
    pub source: Option<LitStr>,
    /// `validate = path::to::function`
    pub validate: Option<syn::Path>,
    /// `version = N`
    pub version: Option<syn::LitInt>,
    pub fields: Vec<Field<'a>>,
}

/// One field of an event, as written.
pub struct Field<'a> {
    /// The field's name; tuple fields are `0`, `1`...
    pub name: String,
    pub ty: &'a Type,
}

impl Field<'_> {
    /// The type as written, without spaces (`Option<Vec<String>>`).
    pub fn type_text(&self) -> String {
        let ty = self.ty;
        quote::quote!(#ty).to_string().replace(' ', "")
    }
}

const MISSING_NAME: &str = "missing event name: add `#[event(name = \"area.happened\")]` \
                            (lowercase dotted, e.g. \"subscription.fetched\")";

impl<'a> EventInput<'a> {
    /// The typed view, when the attributes give at least a name, and the
    /// errors of the attributes (a view may come with errors: its keys that
    /// parsed are still checked by `valid`).
    pub fn from_syn(node: &'a DeriveInput) -> (Option<Self>, Option<syn::Error>) {
        let (args, mut errors) = attr::parse_event_args(&node.attrs);
        let Some(name) = args.name else {
            if !args.name_reported {
                let missing = match &args.first_attr {
                    Some(attr) => syn::Error::new_spanned(attr, MISSING_NAME),
                    None => syn::Error::new(node.ident.span(), MISSING_NAME),
                };
                attr::push(&mut errors, missing);
            }
            return (None, errors);
        };
        let fields = match &node.data {
            Data::Struct(data) => data
                .fields
                .iter()
                .enumerate()
                .map(|(i, field)| Field {
                    name: match &field.ident {
                        Some(ident) => syn::ext::IdentExt::unraw(ident).to_string(),
                        None => i.to_string(),
                    },
                    ty: &field.ty,
                })
                .collect(),
            Data::Enum(_) | Data::Union(_) => Vec::new(),
        };
        let input = EventInput {
            ident: &node.ident,
            name,
            source: args.source,
            validate: args.validate,
            version: args.version,
            fields,
        };
        (Some(input), errors)
    }
}

/// A function under `#[handler]`.
pub struct HandlerInput<'a> {
    pub func: &'a ItemFn,
    pub name: Option<LitStr>,
    pub priority: i32,
    /// `emits = [...]`, if given.
    pub emits: Option<Vec<Type>>,
}

impl<'a> HandlerInput<'a> {
    pub fn new(args: HandlerArgs, func: &'a ItemFn) -> Self {
        HandlerInput {
            func,
            name: args.name,
            priority: args.priority.unwrap_or(0),
            emits: args.emits,
        }
    }
}
