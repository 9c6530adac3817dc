//! The batch as the driver reads it (one JSON text, built from the bytes
//! the host sent without parsing them) and the driver's results as items.

use ebb_sdk::bindings::destination::ebb::plugin::types as wit;
use ebb_sdk::bindings::transform::exports::ebb::plugin::transform::Item;
use ebb_sdk::{Error, ErrorKind};
use rquickjs::{Array, Value};

/// `[{"op","id","fields","previous","delivery_id"}, …]`.
pub fn batch_json(batch: &[wit::Event]) -> String {
    let size: usize = batch
        .iter()
        .map(|e| 80 + e.id.len() + e.fields.len() + e.previous.as_ref().map_or(4, Vec::len))
        .sum();
    let mut out = String::with_capacity(size + 2);
    out.push('[');
    for (i, event) in batch.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"op":""#);
        out.push_str(op_name(event.op));
        out.push_str(r#"","id":"#);
        push_string(&mut out, &event.id);
        out.push_str(r#","fields":"#);
        push_json(&mut out, &event.fields);
        out.push_str(r#","previous":"#);
        match &event.previous {
            Some(previous) => push_json(&mut out, previous),
            None => out.push_str("null"),
        }
        out.push_str(r#","delivery_id":"#);
        push_string(&mut out, &event.delivery_id);
        out.push('}');
    }
    out.push(']');
    out
}

fn op_name(op: wit::Op) -> &'static str {
    match op {
        wit::Op::Added => "added",
        wit::Op::Updated => "updated",
        wit::Op::Deleted => "deleted",
    }
}

fn push_string(out: &mut String, text: &str) {
    // Writing a string to a String cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// JSON bytes from the host, which are UTF-8 (it wrote them with serde).
fn push_json(out: &mut String, bytes: &[u8]) {
    out.push_str(&String::from_utf8_lossy(bytes));
}

/// The driver's results, one per event of `batch`.
pub fn items(batch: &[wit::Event], results: Value<'_>) -> Vec<Item> {
    let Some(results) = results.into_array().filter(|r| r.len() == batch.len()) else {
        return fail_all(
            batch.len(),
            "the JavaScript driver returned no result per event",
        );
    };
    batch
        .iter()
        .zip(results.iter::<Value>())
        .map(|(event, result)| match result {
            Ok(result) => item(event, result)
                .unwrap_or_else(|e| Item::Fail(internal(format!("reading the result: {e}")))),
            Err(e) => Item::Fail(internal(format!("reading the result: {e}"))),
        })
        .collect()
}

fn item(input: &wit::Event, result: Value<'_>) -> rquickjs::Result<Item> {
    if result.is_null() || result.is_undefined() {
        return Ok(Item::Drop);
    }
    if let Some(message) = result.as_string() {
        return Ok(Item::Fail(Error::rejected(message.to_string()?).into()));
    }
    let ctx = result.ctx().clone();
    let flat: Array = rquickjs::FromJs::from_js(&ctx, result)?;
    let mut events = Vec::with_capacity(flat.len() / 4);
    for at in (0..flat.len()).step_by(4) {
        let op: String = flat.get(at)?;
        let previous: Value = flat.get(at + 3)?;
        let previous = if previous.is_bool() {
            input.previous.clone()
        } else if previous.is_null() {
            None
        } else {
            Some(previous.get::<String>()?.into_bytes())
        };
        events.push(wit::Event {
            op: match op.as_str() {
                "added" => wit::Op::Added,
                "deleted" => wit::Op::Deleted,
                _ => wit::Op::Updated,
            },
            id: flat.get(at + 1)?,
            fields: flat.get::<String>(at + 2)?.into_bytes(),
            previous,
            delivery_id: input.delivery_id.clone(),
        });
    }
    Ok(match events.len() {
        1 => Item::Keep(events.remove(0)),
        _ => Item::Split(events),
    })
}

fn internal(message: String) -> wit::Error {
    Error::new(ErrorKind::Internal, message).into()
}

/// Every event of a batch of `count` failing with `message`.
pub fn fail_all(count: usize, message: &str) -> Vec<Item> {
    (0..count)
        .map(|_| Item::Fail(Error::rejected(message).into()))
        .collect()
}
