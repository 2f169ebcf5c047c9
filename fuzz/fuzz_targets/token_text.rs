//! Token decoding from text and bytes: never panics, and whatever parses is canonical
//! (encodes back to exactly the input), so no two texts name one token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotauth::{TOKEN_LEN, TOKEN_TEXT_LEN, Token, TokenError};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        match Token::from_text(text) {
            Ok(token) => {
                assert_eq!(token.to_text().as_str(), text, "non-canonical text parsed");
                assert_eq!(Token::from_bytes(token.as_bytes()).ok(), Some(token));
            }
            Err(TokenError::WrongLength { len }) => {
                assert_eq!(len, text.len());
                assert_ne!(len, TOKEN_TEXT_LEN);
            }
            Err(_) => assert_eq!(text.len(), TOKEN_TEXT_LEN),
        }
    }
    match Token::from_bytes(data) {
        Ok(token) => {
            assert_eq!(&token.as_bytes()[..], data);
            let text = token.to_text();
            assert_eq!(Token::from_text(text.as_str()).ok(), Some(token));
        }
        Err(e) => {
            assert_ne!(data.len(), TOKEN_LEN);
            assert_eq!(e, TokenError::WrongLength { len: data.len() });
        }
    }
});
