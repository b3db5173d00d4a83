//! Types as written in Rust, for the suggestions in error messages.

use syn::Type;

/// `ty` as written in Rust, for an error's suggestion: a space only between
/// two words (`dyn Store`, `&'a T`), none around punctuation.
pub fn written(ty: &Type) -> String {
    fn join(tokens: proc_macro2::TokenStream, out: &mut String, word_before: &mut bool) {
        use proc_macro2::{Delimiter, TokenTree};
        for token in tokens {
            match token {
                TokenTree::Ident(ident) => {
                    if *word_before {
                        out.push(' ');
                    }
                    out.push_str(&ident.to_string());
                    *word_before = true;
                }
                TokenTree::Literal(literal) => {
                    if *word_before {
                        out.push(' ');
                    }
                    out.push_str(&literal.to_string());
                    *word_before = true;
                }
                TokenTree::Punct(punct) => {
                    // `+` reads better spaced: `dyn Store + Send`.
                    if punct.as_char() == '+' {
                        out.push_str(" + ");
                    } else {
                        out.push(punct.as_char());
                    }
                    // A lifetime's quote joins the word after it.
                    *word_before = false;
                }
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::None => ("", ""),
                    };
                    out.push_str(open);
                    *word_before = false;
                    join(group.stream(), out, word_before);
                    out.push_str(close);
                    *word_before = !close.is_empty() || *word_before;
                }
            }
        }
    }
    let mut out = String::new();
    join(quote::quote!(#ty), &mut out, &mut false);
    out
}
