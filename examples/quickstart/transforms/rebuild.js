// The quickstart's JavaScript transformation (sync `users_js`), the worked
// example of docs/transforms.md: rebuilds `attributes` from its key/value
// pairs, in `fields` and in `previous` (the record Ebb last delivered, as
// the model returned it), and drops an update when nothing a CRM reads
// changed.
import { fromPairs, changed } from "warehouseActionsUtils";

const WATCHED = ["email", "plan", "attributes"];

export function transformEvent(event) {
  const now = { ...event.fields, attributes: fromPairs(event.fields.attributes) };
  const before = event.previous && {
    ...event.previous,
    attributes: fromPairs(event.previous.attributes),
  };
  if (event.op === "updated" && before && !changed(before, now, WATCHED)) {
    return null;
  }
  return { ...event, fields: now, previous: before };
}
