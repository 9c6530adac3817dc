// The quickstart's JavaScript transformation (sync `users_js`): rebuilds
// `attributes` from its key/value pairs, and drops an update when nothing a
// CRM reads changed, comparing with `previous` (the record Ebb last
// delivered, as the model returned it).
import { fromPairs, changed } from "warehouseActionsUtils";

const WATCHED = ["email", "plan", "attributes"];

export function transformEvent(event, metadata) {
  const attributes = fromPairs(event.fields.attributes);
  if (event.op === "updated" && event.previous) {
    const before = { ...event.previous, attributes: fromPairs(event.previous.attributes) };
    if (!changed(before, { ...event.fields, attributes }, WATCHED)) {
      log("unchanged for the CRM, dropped:", metadata(event).key);
      return null;
    }
  }
  event.fields.attributes = attributes;
  return event;
}
