//! A record as a store hands it back to rotauth-axum: `Record::from_bytes` on arbitrary
//! bytes never panics; it accepts exactly the bytes `Session::decode` accepts (which are
//! `Session::ENCODED_LEN` long), refusing the rest as `StoreError::Corrupt` with decode's
//! own error; an accepted record keeps the bytes it was read from, names the session they
//! encode, and reads back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rotauth::Session;
use rotauth_axum::{Record, StoreError};

fuzz_target!(|data: &[u8]| {
    match (Record::from_bytes(data), Session::decode(data)) {
        (Ok(record), Ok(session)) => {
            assert_eq!(data.len(), Session::ENCODED_LEN);
            assert_eq!(record.as_bytes(), data);
            assert_eq!(record.client_id(), session.client_id());
            assert_eq!(record.version(), session.version());
            assert_eq!(record.expires_at(), session.expires_at());
            assert_eq!(Record::from_session(&session).as_bytes(), data);
            let again = Record::from_bytes(record.as_bytes()).expect("a record reads back");
            assert_eq!(again.as_bytes(), data);
        }
        (Err(StoreError::Corrupt(error)), Err(expected)) => assert_eq!(error, expected),
        (got, expected) => panic!("read {got:?}, decode said {:?}", expected.err()),
    }
});
