//! What the line leaves on disk: JSONL events (never lost) and defect images (shed when the disk
//! is slow or full), each with bounded retention.
pub mod events;
pub mod images;
