//! What other processes on the same storage announce (`NOTIFY` payloads on the checkpoint
//! channel): a process trusts its storage database, but a payload is still parsed as input.

use riptide_storage::notifications::{Notice, NoticeBody, PAYLOAD_MAX};

/// `Notice::parse` of any text: never panics; what it accepts is within the size limit, has
/// ordered op ids, and encodes to a payload that parses to the same notice.
pub fn notification(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(notice) = Notice::parse(text) else {
        return;
    };
    assert!(
        text.len() <= PAYLOAD_MAX + 32,
        "an oversized payload was accepted"
    );
    if let NoticeBody::Checkpoint(c) = &notice.body {
        assert!(
            c.previous.0 >= 0 && c.previous <= c.checkpoint.op_id,
            "op ids out of order"
        );
    }
    let payload = notice.to_payload();
    // Re-encoding can lengthen a payload (escapes); only one that fits must parse again.
    if payload.len() <= PAYLOAD_MAX {
        let again = Notice::parse(&payload).expect("an encoded notice parses");
        assert_eq!(again, notice, "notification round trip");
    }
}
