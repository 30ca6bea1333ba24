//! Decoding every request message of the control API (what a client can send): the first
//! byte picks the type, the rest is the message. A message that decodes re-encodes to one
//! that decodes equal; an ApplyRequest's config goes through the parser the host uses.
#![no_main]

use hoist_fuzz::api;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    let msg = M::decode(data).ok()?;
    let again = M::decode(msg.encode_to_vec().as_slice()).expect("a re-encoded message decodes");
    assert_eq!(msg, again, "re-encoding changed the message");
    Some(msg)
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    match kind % 13 {
        0 => drop(round_trip::<api::StatusRequest>(body)),
        1 => drop(round_trip::<api::ServiceRequest>(body)),
        2 => drop(round_trip::<api::LogsRequest>(body)),
        3 => drop(round_trip::<api::EventsRequest>(body)),
        4 => drop(round_trip::<api::ExecRequest>(body)),
        5 => drop(round_trip::<api::ShutdownRequest>(body)),
        6 => drop(round_trip::<api::VersionRequest>(body)),
        7 => {
            if let Some(req) = round_trip::<api::ApplyRequest>(body) {
                let _ = hoist_config::parse(&req.config, &req.file).map_err(|e| e.to_string());
            }
        }
        8 => drop(round_trip::<api::ConfirmRequest>(body)),
        9 => drop(round_trip::<api::RollbackRequest>(body)),
        10 => drop(round_trip::<api::HistoryRequest>(body)),
        11 => drop(round_trip::<api::MissingBlobsRequest>(body)),
        _ => drop(round_trip::<api::BlobChunk>(body)),
    }
});
