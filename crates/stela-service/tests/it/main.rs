//! The service layer on real stores (SQLite always, PostgreSQL too when `STELA_TEST_PG_URL` is
//! set), one module per feature.

mod ingest_marks;
