//! The `#[nimbus_sdk::function]` attribute; see the `nimbus-sdk` crate docs.
//!
//! It keeps the author's function as written and adds a `main` that runs it
//! through `nimbus_sdk::__private`. Everything it can check about the
//! signature it checks here, so a wrong signature is a compile error that
//! says what to write instead, not a confusing trait error.

use proc_macro::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type, parse_macro_input};

/// Turn `fn name(input: In) -> Result<Out, E>` into a Nimbus function.
///
/// `In: DeserializeOwned`, `Out: Serialize`, `E: Display`. With
/// `input: Vec<u8>` and `Result<Vec<u8>, E>` the function gets the raw input
/// bytes and answers raw bytes (which must be JSON).
#[proc_macro_attribute]
pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        let args = proc_macro2::TokenStream::from(args);
        return syn::Error::new(args.span(), "#[nimbus_sdk::function] takes no arguments")
            .to_compile_error()
            .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    match expand(&function) {
        Ok(tokens) => tokens.into(),
        // Only our message: a stub `main` keeps rustc from adding "`main`
        // function not found" on top of it.
        Err(error) => {
            let error = error.to_compile_error();
            quote! {
                #error
                fn main() {}
            }
            .into()
        }
    }
}

fn expand(function: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let signature = &function.sig;
    if let Some(asyncness) = &signature.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "a Nimbus function is synchronous: remove `async`",
        ));
    }
    if !signature.generics.params.is_empty() || signature.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            signature.generics.span(),
            "a Nimbus function cannot be generic: name the input and output types",
        ));
    }
    if signature.ident == "main" {
        return Err(syn::Error::new(
            signature.ident.span(),
            "name the function something other than `main`: the attribute generates `main`",
        ));
    }
    let input = match signature.inputs.len() {
        1 => &signature.inputs[0],
        0 => {
            return Err(syn::Error::new(
                signature.ident.span(),
                "a Nimbus function takes exactly one argument, its input: `fn handle(input: In) -> Result<Out, E>`",
            ));
        }
        _ => {
            return Err(syn::Error::new(
                signature.inputs.span(),
                "a Nimbus function takes exactly one argument, its input: `fn handle(input: In) -> Result<Out, E>`",
            ));
        }
    };
    let input_type = match input {
        FnArg::Typed(typed) => &*typed.ty,
        FnArg::Receiver(receiver) => {
            return Err(syn::Error::new(
                receiver.span(),
                "a Nimbus function is a free function, not a method",
            ));
        }
    };
    let ReturnType::Type(_, output_type) = &signature.output else {
        return Err(syn::Error::new(
            signature.span(),
            "a Nimbus function returns `Result<Out, E>` (Out: Serialize, E: Display)",
        ));
    };
    if !is_result(output_type) {
        return Err(syn::Error::new(
            output_type.span(),
            "a Nimbus function returns `Result<Out, E>` (Out: Serialize, E: Display)",
        ));
    }
    let name = &signature.ident;
    let runner = if is_byte_vec(input_type) {
        quote! { ::nimbus_sdk::__private::run_raw }
    } else {
        quote! { ::nimbus_sdk::__private::run }
    };
    Ok(quote! {
        #function

        fn main() {
            #runner(#name)
        }
    })
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

fn is_result(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|segment| segment.ident == "Result")
}

fn is_byte_vec(ty: &Type) -> bool {
    let Some(segment) = last_segment(ty) else {
        return false;
    };
    let syn::PathArguments::AngleBracketed(args) = &segment.arguments else {
        return false;
    };
    segment.ident == "Vec"
        && args.args.len() == 1
        && matches!(&args.args[0], syn::GenericArgument::Type(inner) if last_segment(inner).is_some_and(|s| s.ident == "u8"))
}
