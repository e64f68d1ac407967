// The shapes shared with the Rust side come from ui/src/lib/bindings/, which ts-rs
// generates from the Rust types (src-tauri/src/bindings.rs; `make bindings` rewrites them,
// `make check` fails when they drift). Only UI-side names and refinements live here.

export type * from './bindings';

import type { CompareEvent, ComparePlan, CompareSummary, LaneLoaded } from './bindings';

/** The `format` argument of the export commands (parsed by the core's ExportFormat). */
export type ExportFormat = 'md' | 'json';

/** A column's chat event, flattened: `{column: 0, type: 'token', text: '…'}`. */
export type CompareColumnEvent = CompareEvent;

/** The compare stream's own events, as they arrive (CompareOutput's tagged variants). */
export type ComparePlanEvent = { type: 'plan' } & ComparePlan;
export type LaneLoadedEvent = { type: 'loaded' } & LaneLoaded;
export type CompareSummaryEvent = { type: 'summary' } & CompareSummary;
