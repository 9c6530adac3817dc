// Helpers shared by the quickstart's transformations, imported by name:
//   import { fromPairs, changed } from "warehouseActionsUtils";
// (the sync's `libraries` maps that name to this file).

// An object from key/value pairs: [["plan", "pro"], …] or
// [{"key": "plan", "value": "pro"}, …], as an array or as JSON text (how
// warehouses without a JSON type return them). Pairs whose value is null or
// empty are left out, as `ebb:unpack-pairs` leaves them out.
export function fromPairs(pairs) {
  const list = typeof pairs === "string" ? JSON.parse(pairs) : pairs ?? [];
  const object = {};
  for (const pair of list) {
    const [key, value] = Array.isArray(pair) ? pair : [pair.key, pair.value];
    if (value !== null && value !== undefined && value !== "") object[key] = value;
  }
  return object;
}

// Whether any of `keys` differs between two records.
export function changed(before, now, keys) {
  return keys.some((key) => JSON.stringify(before[key]) !== JSON.stringify(now[key]));
}
