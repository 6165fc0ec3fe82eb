//! The data of `--mode sharing`, made in bulk: results spread over many holders (a few of them
//! heavy), the applications they answer, and an access log, written straight into a fresh
//! store's tables with raw SQL (multi-row INSERTs in one transaction on SQLite, COPY on
//! PostgreSQL). The store's API writes one row per transaction, which would take hours here.
//!
//! Rows are realistic where a read can tell: results carry the canonical results of the mapping
//! tests (one per license type) as bodies and a credential sealed by the hub's own code, holders
//! are keyed by the hub's own keyed hash, and every row is written in the order the hub would
//! have written it (by time, holders mixed), so that a holder's rows are scattered over the
//! tables as they would be after two years of service. A run's data is the same every time: the
//! random choices come from a fixed seed.

use sqlx::postgres::PgCopyIn;
use sqlx::{Connection, Executor, PgConnection, Row, SqliteConnection};
use std::path::Path;
use std::time::{Duration, Instant};
use tongban::config::Config;
use tongban::model::{IdType, ResultState};
use tongban::personal::HolderIndex;
use tongban::service::sealing::Sealer;

/// How much to make.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub results: usize,
    pub accesses: usize,
    pub holders: usize,
    /// Companies with `HEAVY_RESULTS` results each, from the fewest to the most.
    pub heavy_holders: usize,
}

/// The results of the heavy holders, from the first to the last (a chain of restaurants or a
/// builder: hundreds of licenses).
pub const HEAVY_RESULTS: (usize, usize) = (100, 500);
/// Per mille of licenses with a second version, which supersedes the first.
const SECOND_VERSION_PER_MILLE: u64 = 70;
/// Per mille of (latest) versions revoked.
const REVOKED_PER_MILLE: u64 = 30;
/// The period the results and accesses are spread over, up to now.
const SPAN_MS: i64 = 730 * 24 * 3600 * 1000;
/// The tables filled, whose secondary indexes are dropped during the load and made again after.
const TABLES: [&str; 3] = ["applications", "results", "result_accesses"];

/// Slots of the row templates.
const APPLICATION: usize = 0;
const LICENSE_ID: usize = 1;
const NUMBER: usize = 2;
const HOLDER_ID: usize = 3;
const MARKERS: [&str; 4] = ["@APPLICATION@", "@LICENSE-ID@", "@NUMBER@", "@HOLDER-ID@"];

/// splitmix64: fast and seeded, so that every run makes the same data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    fn per_mille(&mut self, p: u64) -> bool {
        self.next_u64() % 1000 < p
    }

    /// `digits` lowercase hexadecimal digits.
    fn hex(&mut self, digits: usize) -> String {
        let mut text = String::with_capacity(digits);
        while text.len() < digits {
            let word = self.next_u64();
            for shift in (0..16).rev() {
                if text.len() == digits {
                    break;
                }
                let nibble = ((word >> (shift * 4)) & 0xf) as u32;
                text.push(char::from_digit(nibble, 16).unwrap_or('0'));
            }
        }
        text
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// A text with slots (the `MARKERS` it contained), filled per row without parsing.
struct Template {
    pieces: Vec<Piece>,
}

enum Piece {
    Text(String),
    Slot(usize),
}

impl Template {
    fn new(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut rest = text;
        loop {
            let next = MARKERS
                .iter()
                .enumerate()
                .filter_map(|(slot, m)| rest.find(m).map(|at| (at, slot, m.len())))
                .min();
            match next {
                Some((at, slot, len)) => {
                    pieces.push(Piece::Text(rest[..at].to_owned()));
                    pieces.push(Piece::Slot(slot));
                    rest = &rest[at + len..];
                }
                None => {
                    pieces.push(Piece::Text(rest.to_owned()));
                    return Template { pieces };
                }
            }
        }
    }

    fn fill(&self, values: &[&str; 4]) -> String {
        let mut out = String::with_capacity(self.len_hint());
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(s) => out.push_str(values[*s]),
            }
        }
        out
    }

    fn len_hint(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Slot(_) => 40,
            })
            .sum()
    }
}

/// A license type a system issues, with its row templates.
pub struct LicenseKind {
    pub system: String,
    pub type_code: String,
    /// The issuing department's USCC, as the license id has it.
    issuer: String,
    pub holder_type: IdType,
    /// The items of the system whose applications end in this license.
    items: Vec<String>,
    department: String,
    body: Template,
    credential: Template,
}

/// One result row, planned before any is written, so that each table's pass agrees on it.
#[derive(Debug, Clone, Copy)]
struct Planned {
    holder: u32,
    kind: u8,
    /// The row of the license's first version, which names the license.
    serial: u32,
    version: u8,
    state: ResultState,
    received_at: i64,
}

/// What was made, for the report and for choosing what to read.
pub struct Made {
    pub kinds: Vec<LicenseKind>,
    /// Holders' index keys; the heavy ones first.
    pub holder_keys: Vec<String>,
    /// Per holder: the license kinds they hold (bit `kind`).
    pub holder_kinds: Vec<u8>,
    pub results_per_holder: Vec<u32>,
    pub accesses_per_holder: Vec<u32>,
    pub states: [(ResultState, usize); 3],
    /// Mean bytes of a result's body and credential, and an application's body.
    pub body_bytes: usize,
    pub credential_bytes: usize,
    pub application_bytes: usize,
    /// Each step and how long it took.
    pub steps: Vec<(String, Duration)>,
}

impl Made {
    /// The department (USCC) and id of a system other than the one issuing `kind`: the
    /// `pick`th of them, round the list.
    pub fn other_department(&self, config: &Config, kind: usize, pick: usize) -> (String, String) {
        let others: Vec<_> = config
            .adapters
            .values()
            .filter(|a| a.id != self.kinds[kind].system)
            .collect();
        let adapter = others[pick % others.len()];
        (adapter.department_uscc.clone(), adapter.id.clone())
    }
}

/// The license kinds: one per license type among the canonical results of the mapping tests
/// (`mappings/tests/*-result/*.canonical.json`), each sealed once by a hub key made for the run.
pub fn license_kinds(config: &Config, sealer: &Sealer) -> Result<Vec<LicenseKind>, String> {
    let tests = config.dir.join("mappings").join("tests");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&tests).map_err(|e| format!("{}: {e}", tests.display()))? {
        let dir = dir.map_err(|e| e.to_string())?.path();
        if !dir.to_string_lossy().ends_with("-result") {
            continue;
        }
        for file in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let file = file.map_err(|e| e.to_string())?.path();
            if file.to_string_lossy().ends_with(".canonical.json") {
                files.push(file);
            }
        }
    }
    files.sort();
    let mut kinds: Vec<LicenseKind> = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut result: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let text_at = |pointer: &str| {
            result
                .pointer(pointer)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("{}: no {pointer}", file.display()))
        };
        let (system, type_code, issuer, holder_type) = (
            text_at("/system")?,
            text_at("/license/type_code")?,
            text_at("/license/issuer/uscc")?,
            text_at("/license/holder/id_type")?,
        );
        if kinds.iter().any(|k| k.type_code == type_code) {
            continue;
        }
        let Some(adapter) = config.adapters.get(&system) else {
            continue;
        };
        let holder_type: IdType = holder_type
            .parse()
            .map_err(|e| format!("{}: {e}", file.display()))?;
        result["application_id"] = MARKERS[APPLICATION].into();
        result["license"]["id"] = MARKERS[LICENSE_ID].into();
        result["license"]["number"] = MARKERS[NUMBER].into();
        result["license"]["holder"]["id_number"] = MARKERS[HOLDER_ID].into();
        let credential = sealer
            .seal_result(&result, 0)
            .map_err(|e| format!("sealing {}: {e}", file.display()))?;
        kinds.push(LicenseKind {
            system,
            type_code,
            issuer,
            holder_type,
            items: adapter.items.iter().map(|i| i.code.clone()).collect(),
            department: adapter.department_uscc.clone(),
            body: Template::new(&result.to_string()),
            credential: Template::new(&credential.to_string()),
        });
    }
    if !IdType::ALL
        .iter()
        .all(|t| kinds.iter().any(|k| k.holder_type == *t))
    {
        return Err(format!(
            "{}: the canonical results need a license for each ID type",
            tests.display()
        ));
    }
    Ok(kinds)
}

fn license_id(kind: &LicenseKind, serial: u32, version: u8) -> String {
    // A check character of the id's alphabet; nothing here checks it.
    const CHECK: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let check = CHECK[(serial as usize * 7 + version as usize) % CHECK.len()] as char;
    format!(
        "1.2.156.3005.2.{}.{}.{serial:016}.{version:03}.{check}",
        kind.type_code, kind.issuer
    )
}

fn application_id(row: usize, at: i64) -> String {
    let day = chrono::DateTime::from_timestamp_millis(at)
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_default();
    format!("TB-210102-{day}-{row:07}")
}

fn holder_id_number(holder: usize, id_type: IdType) -> String {
    match id_type {
        IdType::CitizenId => format!("210102{holder:012}"),
        IdType::Uscc => format!("91210102{holder:010}"),
    }
}

/// Heavy holders are companies; of the others one in five.
fn holder_type(holder: usize, heavy: usize) -> IdType {
    if holder < heavy || holder.is_multiple_of(5) {
        IdType::Uscc
    } else {
        IdType::CitizenId
    }
}

fn heavy_results(holder: usize, heavy: usize) -> usize {
    let (least, most) = HEAVY_RESULTS;
    if heavy < 2 {
        return (least + most) / 2;
    }
    least + (most - least) * holder / (heavy - 1)
}

/// A cell of a row to load.
enum Cell {
    Text(String),
    Int(i64),
    Null,
}

/// Where the rows go: a connection of the bench's own, beside the store's pool.
pub enum Loader {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Loader {
    /// A connection to load the SQLite database at `path` fast: no rollback journal and no
    /// fsync (a crash would spoil the load, which is only ever made again), a 1 GiB page cache.
    /// WAL comes back at the end ([`Loader::finish`]), as the hub opens it.
    pub async fn sqlite(path: &Path) -> Result<Loader, String> {
        let url = format!("sqlite://{}?mode=rw", path.display());
        let mut conn = SqliteConnection::connect(&url)
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        conn.execute(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
             PRAGMA cache_size = -1048576; PRAGMA temp_store = MEMORY;",
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Loader::Sqlite(conn))
    }

    /// A connection to load the PostgreSQL database at `url`: commits not waited for, and
    /// room to sort for the indexes.
    pub async fn postgres(url: &str) -> Result<Loader, String> {
        let mut conn = PgConnection::connect(url)
            .await
            .map_err(|e| format!("cannot connect to the bench database: {e}"))?;
        conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '1GB'")
            .await
            .map_err(|e| e.to_string())?;
        Ok(Loader::Postgres(conn))
    }

    /// The secondary indexes of the loaded tables, as (name, the statement that makes it).
    async fn secondary_indexes(&mut self) -> Result<Vec<(String, String)>, sqlx::Error> {
        let tables = TABLES.map(|t| format!("'{t}'")).join(", ");
        let rows = match self {
            Loader::Sqlite(conn) => conn
                .fetch_all(
                    format!(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index' \
                         AND sql IS NOT NULL AND tbl_name IN ({tables}) ORDER BY name"
                    )
                    .as_str(),
                )
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?,
            Loader::Postgres(conn) => conn
                .fetch_all(
                    format!(
                        "SELECT indexname, indexdef FROM pg_indexes \
                         WHERE schemaname = current_schema() AND tablename IN ({tables}) \
                         AND indexname NOT IN (SELECT conname FROM pg_constraint) \
                         ORDER BY indexname"
                    )
                    .as_str(),
                )
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?,
        };
        Ok(rows)
    }

    async fn execute(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Loader::Sqlite(conn) => conn.execute(sql).await.map(drop),
            Loader::Postgres(conn) => conn.execute(sql).await.map(drop),
        }
    }

    /// A writer of rows of `table`.
    async fn table(
        &mut self,
        table: &'static str,
        columns: &'static [&'static str],
    ) -> Result<TableWriter<'_>, sqlx::Error> {
        let target = match self {
            Loader::Sqlite(conn) => {
                conn.execute("BEGIN").await?;
                Target::Sqlite {
                    conn,
                    batch: Vec::new(),
                    // SQLite takes at most 32,766 parameters a statement.
                    per_statement: (30_000 / columns.len()).min(500),
                }
            }
            Loader::Postgres(conn) => {
                let copy = conn
                    .copy_in_raw(&format!("COPY {table} ({}) FROM STDIN", columns.join(", ")))
                    .await?;
                Target::Postgres {
                    copy,
                    buffer: Vec::with_capacity(COPY_CHUNK + 64 * 1024),
                }
            }
        };
        Ok(TableWriter {
            table,
            columns,
            target,
        })
    }

    /// Makes the indexes again, and on PostgreSQL vacuums and analyzes what was loaded, as
    /// autovacuum would soon after (SQLite is left without statistics: the hub never runs
    /// ANALYZE). Puts SQLite back in WAL mode.
    async fn finish(
        &mut self,
        indexes: &[(String, String)],
        steps: &mut Vec<(String, Duration)>,
    ) -> Result<(), sqlx::Error> {
        let started = Instant::now();
        for (_, create) in indexes {
            self.execute(create).await?;
        }
        steps.push((
            format!("{} secondary indexes made", indexes.len()),
            started.elapsed(),
        ));
        let started = Instant::now();
        match self {
            Loader::Sqlite(conn) => {
                conn.execute("PRAGMA journal_mode = WAL").await?;
            }
            Loader::Postgres(conn) => {
                conn.execute(format!("VACUUM ANALYZE {}", TABLES.join(", ")).as_str())
                    .await?;
                steps.push(("VACUUM ANALYZE".into(), started.elapsed()));
            }
        }
        Ok(())
    }

    /// The database's size on disk, in bytes.
    pub async fn database_bytes(&mut self) -> Result<i64, String> {
        let bytes = match self {
            Loader::Sqlite(conn) => conn
                .fetch_one(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .await
                .and_then(|r| r.try_get::<i64, _>(0)),
            Loader::Postgres(conn) => conn
                .fetch_one("SELECT pg_database_size(current_database())")
                .await
                .and_then(|r| r.try_get::<i64, _>(0)),
        };
        bytes.map_err(|e| format!("the database's size: {e}"))
    }

    /// The database's version and, on PostgreSQL, its buffer cache.
    pub async fn server(&mut self) -> Result<String, String> {
        let text = match self {
            Loader::Sqlite(conn) => conn
                .fetch_one("SELECT 'SQLite ' || sqlite_version()")
                .await
                .and_then(|r| r.try_get::<String, _>(0)),
            Loader::Postgres(conn) => conn
                .fetch_one(
                    "SELECT 'PostgreSQL ' || current_setting('server_version') || \
                     ', shared_buffers ' || current_setting('shared_buffers')",
                )
                .await
                .and_then(|r| r.try_get::<String, _>(0)),
        };
        text.map_err(|e| format!("the database's version: {e}"))
    }

    pub async fn close(self) {
        let _ = match self {
            Loader::Sqlite(conn) => conn.close().await,
            Loader::Postgres(conn) => conn.close().await,
        };
    }
}

/// Bytes sent to COPY at a time.
const COPY_CHUNK: usize = 4 * 1024 * 1024;

struct TableWriter<'c> {
    table: &'static str,
    columns: &'static [&'static str],
    target: Target<'c>,
}

enum Target<'c> {
    Sqlite {
        conn: &'c mut SqliteConnection,
        batch: Vec<Vec<Cell>>,
        per_statement: usize,
    },
    Postgres {
        copy: PgCopyIn<&'c mut PgConnection>,
        buffer: Vec<u8>,
    },
}

impl TableWriter<'_> {
    async fn row(&mut self, row: Vec<Cell>) -> Result<(), sqlx::Error> {
        debug_assert_eq!(row.len(), self.columns.len());
        match &mut self.target {
            Target::Sqlite {
                batch,
                per_statement,
                ..
            } => {
                batch.push(row);
                if batch.len() >= *per_statement {
                    self.flush_sqlite().await?;
                }
            }
            Target::Postgres { copy, buffer } => {
                copy_row(buffer, &row);
                if buffer.len() >= COPY_CHUNK {
                    copy.send(buffer.as_slice()).await?;
                    buffer.clear();
                }
            }
        }
        Ok(())
    }

    async fn flush_sqlite(&mut self) -> Result<(), sqlx::Error> {
        let Target::Sqlite { conn, batch, .. } = &mut self.target else {
            return Ok(());
        };
        if batch.is_empty() {
            return Ok(());
        }
        let row = format!("({})", vec!["?"; self.columns.len()].join(", "));
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            self.table,
            self.columns.join(", "),
            vec![row.as_str(); batch.len()].join(", ")
        );
        let mut query = sqlx::query(&sql);
        for cell in batch.drain(..).flatten() {
            query = match cell {
                Cell::Text(t) => query.bind(t),
                Cell::Int(i) => query.bind(i),
                Cell::Null => query.bind(None::<String>),
            };
        }
        query.execute(&mut **conn).await?;
        Ok(())
    }

    async fn finish(mut self) -> Result<(), sqlx::Error> {
        self.flush_sqlite().await?;
        match self.target {
            Target::Sqlite { conn, .. } => {
                conn.execute("COMMIT").await?;
            }
            Target::Postgres { mut copy, buffer } => {
                if !buffer.is_empty() {
                    copy.send(buffer.as_slice()).await?;
                }
                copy.finish().await?;
            }
        }
        Ok(())
    }
}

/// A row in COPY's text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_row(out: &mut Vec<u8>, row: &[Cell]) {
    for (i, cell) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match cell {
            Cell::Null => out.extend_from_slice(b"\\N"),
            Cell::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Cell::Text(text) => {
                for &b in text.as_bytes() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        _ => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

const APPLICATION_COLUMNS: &[&str] = &[
    "id",
    "item_code",
    "item_version",
    "department",
    "system_id",
    "state",
    "body",
    "accepted_at",
    "updated_at",
];
const RESULT_COLUMNS: &[&str] = &[
    "system_id",
    "license_id",
    "license_key",
    "version",
    "application_id",
    "received_at",
    "body",
    "state",
    "state_at",
    "state_reason",
    "superseded_by",
    "credential",
    "status_index",
    "holder_key",
    "license_type",
];
const ACCESS_COLUMNS: &[&str] = &[
    "id",
    "holder_key",
    "accessed_at",
    "department",
    "system_id",
    "license_id",
    "purpose",
    "detail",
];

/// Makes the data and writes it through `loader`: the plan of every result, then applications,
/// results and accesses, each in one pass, with the secondary indexes dropped during the load
/// and made again after it.
pub async fn generate(
    loader: &mut Loader,
    config: &Config,
    kinds: Vec<LicenseKind>,
    holder_index: &HolderIndex,
    scale: Scale,
) -> Result<Made, String> {
    let sql = |what: &'static str| move |e: sqlx::Error| format!("{what}: {e}");
    let mut steps = Vec::new();
    let mut rng = Rng::new(14);
    let now = tongban::clock::now_millis();
    let start = now - SPAN_MS;
    let (n, m) = (scale.results, scale.accesses);

    let started = Instant::now();
    let holders = scale.holders.max(scale.heavy_holders + 1);
    let holder_keys: Vec<String> = (0..holders)
        .map(|h| {
            let t = holder_type(h, scale.heavy_holders);
            holder_index.of(t, &holder_id_number(h, t))
        })
        .collect();
    // Who holds each row: the heavy holders' share, the rest at random, then mixed in time.
    let mut owners: Vec<u32> = Vec::with_capacity(n);
    for h in 0..scale.heavy_holders {
        let count = heavy_results(h, scale.heavy_holders).min(n - owners.len());
        owners.extend(std::iter::repeat_n(h as u32, count));
    }
    while owners.len() < n {
        let h = scale.heavy_holders + rng.below(holders - scale.heavy_holders);
        owners.push(h as u32);
    }
    rng.shuffle(&mut owners);
    let kinds_of = |t: IdType| -> Vec<u8> {
        (0..kinds.len())
            .filter(|&k| kinds[k].holder_type == t)
            .map(|k| k as u8)
            .collect()
    };
    let (citizen_kinds, company_kinds) = (kinds_of(IdType::CitizenId), kinds_of(IdType::Uscc));
    let mut plan: Vec<Planned> = Vec::with_capacity(n);
    while plan.len() < n {
        let row = plan.len();
        let holder = owners[row];
        let choices = match holder_type(holder as usize, scale.heavy_holders) {
            IdType::CitizenId => &citizen_kinds,
            IdType::Uscc => &company_kinds,
        };
        let kind = choices[rng.below(choices.len())];
        let at = |row: usize| start + (SPAN_MS as i128 * row as i128 / n as i128) as i64;
        let latest = |rng: &mut Rng| {
            if rng.per_mille(REVOKED_PER_MILLE) {
                ResultState::Revoked
            } else {
                ResultState::Valid
            }
        };
        let planned = Planned {
            holder,
            kind,
            serial: row as u32,
            version: 1,
            state: ResultState::Valid,
            received_at: at(row),
        };
        if row + 1 < n && rng.per_mille(SECOND_VERSION_PER_MILLE) {
            plan.push(Planned {
                state: ResultState::Superseded,
                ..planned
            });
            plan.push(Planned {
                version: 2,
                state: latest(&mut rng),
                received_at: at(row + 1),
                ..planned
            });
        } else {
            plan.push(Planned {
                state: latest(&mut rng),
                ..planned
            });
        }
    }
    let mut holder_kinds = vec![0u8; holders];
    let mut results_per_holder = vec![0u32; holders];
    let mut states = [
        (ResultState::Valid, 0),
        (ResultState::Superseded, 0),
        (ResultState::Revoked, 0),
    ];
    for p in &plan {
        holder_kinds[p.holder as usize] |= 1 << p.kind;
        results_per_holder[p.holder as usize] += 1;
        if let Some(s) = states.iter_mut().find(|(s, _)| *s == p.state) {
            s.1 += 1;
        }
    }
    steps.push((
        format!("{holders} holder keys and the plan"),
        started.elapsed(),
    ));

    let indexes = loader
        .secondary_indexes()
        .await
        .map_err(sql("reading the indexes"))?;
    for (name, _) in &indexes {
        loader
            .execute(&format!("DROP INDEX {name}"))
            .await
            .map_err(sql("dropping an index"))?;
    }

    // Applications: one per result, completed, with the example application as body.
    let started = Instant::now();
    let application = std::fs::read_to_string(
        config
            .dir
            .join("examples")
            .join("messages")
            .join("application.json"),
    )
    .map_err(|e| format!("the example application: {e}"))?;
    let mut application: serde_json::Value =
        serde_json::from_str(&application).map_err(|e| format!("the example application: {e}"))?;
    application["id"] = MARKERS[APPLICATION].into();
    let application = Template::new(&application.to_string());
    let application_bytes = application.len_hint();
    let mut writer = loader
        .table("applications", APPLICATION_COLUMNS)
        .await
        .map_err(sql("loading applications"))?;
    for (row, p) in plan.iter().enumerate() {
        let kind = &kinds[p.kind as usize];
        let id = application_id(row, p.received_at);
        let accepted = p.received_at - 86_400_000 * (1 + (p.serial as i64 % 15));
        writer
            .row(vec![
                Cell::Text(id.clone()),
                Cell::Text(kind.items[p.serial as usize % kind.items.len()].clone()),
                Cell::Int(1),
                Cell::Text(kind.department.clone()),
                Cell::Text(kind.system.clone()),
                Cell::Text("completed".into()),
                Cell::Text(application.fill(&[&id, "", "", ""])),
                Cell::Int(accepted),
                Cell::Int(p.received_at),
            ])
            .await
            .map_err(sql("loading applications"))?;
    }
    writer.finish().await.map_err(sql("loading applications"))?;
    steps.push((format!("{n} applications"), started.elapsed()));

    // Results, in the order received.
    let started = Instant::now();
    let (mut body_total, mut credential_total) = (0, 0);
    let mut writer = loader
        .table("results", RESULT_COLUMNS)
        .await
        .map_err(sql("loading results"))?;
    for (row, p) in plan.iter().enumerate() {
        let kind = &kinds[p.kind as usize];
        let id = license_id(kind, p.serial, p.version);
        let key = id.rsplitn(3, '.').nth(2).unwrap_or_default().to_owned();
        let number = format!("{:016}", p.serial);
        let holder = p.holder as usize;
        let holder_number = holder_id_number(holder, kind.holder_type);
        let app = application_id(row, p.received_at);
        let slots = [app.as_str(), &id, &number, &holder_number];
        let (state_at, reason, superseded_by) = match p.state {
            ResultState::Superseded => (
                Cell::Int(plan.get(row + 1).map_or(now, |next| next.received_at)),
                Cell::Null,
                Cell::Text(license_id(kind, p.serial, p.version + 1)),
            ),
            ResultState::Revoked => (
                Cell::Int((p.received_at + 86_400_000 * (1 + p.serial as i64 % 90)).min(now)),
                Cell::Text("持证主体申请注销".into()),
                Cell::Null,
            ),
            _ => (Cell::Null, Cell::Null, Cell::Null),
        };
        let body = kind.body.fill(&slots);
        // The seal's proof and status entry are the template's: nothing here verifies them,
        // and the reads only carry the text.
        let credential = kind.credential.fill(&slots);
        body_total += body.len();
        credential_total += credential.len();
        writer
            .row(vec![
                Cell::Text(kind.system.clone()),
                Cell::Text(id),
                Cell::Text(key),
                Cell::Int(i64::from(p.version)),
                Cell::Text(app.clone()),
                Cell::Int(p.received_at),
                Cell::Text(body),
                Cell::Text(p.state.as_str().into()),
                state_at,
                reason,
                superseded_by,
                Cell::Text(credential),
                Cell::Int(row as i64),
                Cell::Text(holder_keys[holder].clone()),
                Cell::Text(kind.type_code.clone()),
            ])
            .await
            .map_err(sql("loading results"))?;
    }
    writer.finish().await.map_err(sql("loading results"))?;
    loader
        .execute(&format!(
            "UPDATE seal_counter SET next_index = {n} WHERE id = 1"
        ))
        .await
        .map_err(sql("the seal counter"))?;
    steps.push((format!("{n} results"), started.elapsed()));

    // Accesses, in time order: each to a result received before it, by another department's
    // system, for a purpose the negative list allows it.
    let started = Instant::now();
    let purposes: Vec<&String> = config.sharing.purposes.keys().collect();
    let adapters: Vec<_> = config.adapters.values().collect();
    let mut accesses_per_holder = vec![0u32; holders];
    let mut writer = loader
        .table("result_accesses", ACCESS_COLUMNS)
        .await
        .map_err(sql("loading accesses"))?;
    for j in 0..m {
        let at = start + (SPAN_MS as i128 * j as i128 / m.max(1) as i128) as i64;
        let received_by_then = ((n as u128 * (j as u128 + 1)) / m as u128).clamp(1, n as u128);
        // A few tries find an allowed one; the last is taken anyway, so a policy that allows
        // nothing cannot stop the load.
        let mut tries = 0;
        let (row, adapter, purpose) = loop {
            let row = rng.below(received_by_then as usize);
            let kind = &kinds[plan[row].kind as usize];
            let adapter = adapters[rng.below(adapters.len())];
            let purpose = purposes[rng.below(purposes.len())];
            tries += 1;
            let allowed = adapter.id != kind.system
                && config
                    .sharing
                    .type_withheld(&kind.type_code, &adapter.department_uscc, purpose)
                    .is_none();
            if allowed || tries == 64 {
                break (row, adapter, purpose);
            }
        };
        let p = plan[row];
        let kind = &kinds[p.kind as usize];
        accesses_per_holder[p.holder as usize] += 1;
        let detail = if purpose == "material-reuse" {
            Cell::Text(application_id(n + j, at))
        } else {
            Cell::Null
        };
        writer
            .row(vec![
                Cell::Text(rng.hex(24)),
                Cell::Text(holder_keys[p.holder as usize].clone()),
                Cell::Int(at + rng.below(1000) as i64),
                Cell::Text(adapter.department_uscc.clone()),
                Cell::Text(adapter.id.clone()),
                Cell::Text(license_id(kind, p.serial, p.version)),
                Cell::Text(purpose.clone()),
                detail,
            ])
            .await
            .map_err(sql("loading accesses"))?;
    }
    writer.finish().await.map_err(sql("loading accesses"))?;
    steps.push((format!("{m} accesses"), started.elapsed()));

    loader
        .finish(&indexes, &mut steps)
        .await
        .map_err(sql("after the load"))?;

    Ok(Made {
        body_bytes: body_total / n.max(1),
        credential_bytes: credential_total / n.max(1),
        application_bytes,
        kinds,
        holder_keys,
        holder_kinds,
        results_per_holder,
        accesses_per_holder,
        states,
        steps,
    })
}
