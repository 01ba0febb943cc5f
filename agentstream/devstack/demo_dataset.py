"""The demo analysis dataset: Indonesian cooperatives (koperasi), in schema ``koperasi``.

Province names are real; every cooperative and figure is synthetic, generated from a fixed seed
so answers are reproducible. Loaded when missing by ``agentstream up`` and by the tests, together
with the read-only role the agent's SQL tools connect as.
"""

from __future__ import annotations

import datetime
import random
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DATASET_VERSION = 1
SEED = 20_261_121
ROWS = 5_000
READER_ROLE = "agentstream_reader"
# The connection ID the agent's SQL tools reach the demo dataset by.
DEMO_CONNECTION = "demo"
_LOCK_KEY = 0x6B6F_7065_7261  # "kopera"

# (province, island group, capital, other regencies/cities) — real names.
PROVINCES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("Aceh", "Sumatera", "Banda Aceh", ("Aceh Besar", "Lhokseumawe", "Pidie")),
    ("Sumatera Utara", "Sumatera", "Medan", ("Deli Serdang", "Pematangsiantar", "Karo")),
    ("Sumatera Barat", "Sumatera", "Padang", ("Bukittinggi", "Agam", "Solok")),
    ("Riau", "Sumatera", "Pekanbaru", ("Kampar", "Dumai", "Siak")),
    ("Kepulauan Riau", "Sumatera", "Tanjungpinang", ("Batam", "Bintan", "Karimun")),
    ("Jambi", "Sumatera", "Jambi", ("Muaro Jambi", "Kerinci", "Bungo")),
    ("Sumatera Selatan", "Sumatera", "Palembang", ("Ogan Ilir", "Lubuklinggau", "Banyuasin")),
    ("Kepulauan Bangka Belitung", "Sumatera", "Pangkalpinang", ("Bangka", "Belitung")),
    ("Bengkulu", "Sumatera", "Bengkulu", ("Rejang Lebong", "Mukomuko")),
    ("Lampung", "Sumatera", "Bandar Lampung", ("Metro", "Lampung Selatan", "Pringsewu")),
    ("DKI Jakarta", "Jawa", "Jakarta Pusat", ("Jakarta Selatan", "Jakarta Timur", "Jakarta Barat")),
    ("Jawa Barat", "Jawa", "Bandung", ("Bogor", "Bekasi", "Cirebon", "Tasikmalaya")),
    ("Banten", "Jawa", "Serang", ("Tangerang", "Cilegon", "Pandeglang")),
    ("Jawa Tengah", "Jawa", "Semarang", ("Surakarta", "Magelang", "Banyumas", "Kudus")),
    ("DI Yogyakarta", "Jawa", "Yogyakarta", ("Sleman", "Bantul", "Gunungkidul")),
    ("Jawa Timur", "Jawa", "Surabaya", ("Malang", "Sidoarjo", "Kediri", "Jember")),
    ("Bali", "Bali dan Nusa Tenggara", "Denpasar", ("Badung", "Gianyar", "Tabanan")),
    ("Nusa Tenggara Barat", "Bali dan Nusa Tenggara", "Mataram", ("Lombok Timur", "Bima")),
    ("Nusa Tenggara Timur", "Bali dan Nusa Tenggara", "Kupang", ("Ende", "Sikka", "Manggarai")),
    ("Kalimantan Barat", "Kalimantan", "Pontianak", ("Singkawang", "Kubu Raya", "Sambas")),
    ("Kalimantan Tengah", "Kalimantan", "Palangka Raya", ("Kotawaringin Timur", "Kapuas")),
    ("Kalimantan Selatan", "Kalimantan", "Banjarmasin", ("Banjarbaru", "Tanah Laut")),
    ("Kalimantan Timur", "Kalimantan", "Samarinda", ("Balikpapan", "Kutai Kartanegara", "Bontang")),
    ("Kalimantan Utara", "Kalimantan", "Tanjung Selor", ("Tarakan", "Nunukan")),
    ("Sulawesi Utara", "Sulawesi", "Manado", ("Bitung", "Minahasa", "Tomohon")),
    ("Gorontalo", "Sulawesi", "Gorontalo", ("Bone Bolango", "Boalemo")),
    ("Sulawesi Tengah", "Sulawesi", "Palu", ("Poso", "Banggai", "Donggala")),
    ("Sulawesi Barat", "Sulawesi", "Mamuju", ("Majene", "Polewali Mandar")),
    ("Sulawesi Selatan", "Sulawesi", "Makassar", ("Gowa", "Bone", "Parepare")),
    ("Sulawesi Tenggara", "Sulawesi", "Kendari", ("Baubau", "Kolaka", "Konawe")),
    ("Maluku", "Maluku", "Ambon", ("Tual", "Maluku Tengah")),
    ("Maluku Utara", "Maluku", "Sofifi", ("Ternate", "Halmahera Utara")),
    ("Papua", "Papua", "Jayapura", ("Biak Numfor", "Keerom", "Sarmi")),
    ("Papua Barat", "Papua", "Manokwari", ("Fakfak", "Kaimana")),
    ("Papua Selatan", "Papua", "Merauke", ("Boven Digoel", "Mappi")),
    ("Papua Tengah", "Papua", "Nabire", ("Mimika", "Paniai")),
    ("Papua Pegunungan", "Papua", "Wamena", ("Jayawijaya", "Yahukimo")),
    ("Papua Barat Daya", "Papua", "Sorong", ("Raja Ampat", "Sorong Selatan")),
)

TYPES = (
    "Koperasi Simpan Pinjam",
    "Koperasi Konsumen",
    "Koperasi Produsen",
    "Koperasi Pemasaran",
    "Koperasi Jasa",
)
STATUSES = ("aktif", "aktif", "aktif", "aktif", "tidak aktif", "dalam pembinaan")
_NAME_A = (
    "Maju",
    "Sejahtera",
    "Makmur",
    "Karya",
    "Mandiri",
    "Sentosa",
    "Harapan",
    "Berkah",
    "Sumber",
    "Bina",
    "Tunas",
    "Mitra",
    "Bahari",
    "Subur",
    "Jaya",
)
_NAME_B = (
    "Bersama",
    "Abadi",
    "Usaha",
    "Rejeki",
    "Tani",
    "Nelayan",
    "Makmur",
    "Sejati",
    "Lestari",
    "Mulia",
    "Utama",
    "Sakti",
    "Amanah",
    "Pratama",
    "Nusantara",
)

_SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS koperasi;
DROP TABLE IF EXISTS koperasi.koperasi;
DROP TABLE IF EXISTS koperasi.provinsi;
DROP TABLE IF EXISTS koperasi.dataset_info;
CREATE TABLE koperasi.provinsi (
    nama        text PRIMARY KEY,
    pulau       text NOT NULL,
    ibu_kota    text NOT NULL
);
CREATE TABLE koperasi.koperasi (
    id                  integer PRIMARY KEY,
    nama                text NOT NULL,
    nomor_badan_hukum   text NOT NULL UNIQUE,
    provinsi            text NOT NULL REFERENCES koperasi.provinsi (nama),
    kabupaten_kota      text NOT NULL,
    jenis               text NOT NULL,
    tanggal_berdiri     date NOT NULL,
    jumlah_anggota      integer NOT NULL,
    modal_awal          numeric(18, 2) NOT NULL,
    total_aset          numeric(18, 2) NOT NULL,
    status              text NOT NULL
);
CREATE INDEX koperasi_by_provinsi ON koperasi.koperasi (provinsi);
COMMENT ON TABLE koperasi.koperasi IS
    'Synthetic demo data: cooperatives of Indonesia (real province names, generated figures).';
COMMENT ON COLUMN koperasi.koperasi.modal_awal IS 'Starting capital in Rupiah';
COMMENT ON COLUMN koperasi.koperasi.total_aset IS 'Total assets in Rupiah';
CREATE TABLE koperasi.dataset_info (version integer NOT NULL, seed bigint NOT NULL,
                                    rows integer NOT NULL);
"""


def _rows(rng: random.Random) -> list[tuple[object, ...]]:
    # Each province gets its own level of capital, so rankings are clear and stable.
    capital_level = {p[0]: rng.uniform(0.4, 2.5) for p in PROVINCES}
    weights = [4 if p[1] == "Jawa" else 1 for p in PROVINCES]
    rows: list[tuple[object, ...]] = []
    for i in range(1, ROWS + 1):
        province, _, capital, regencies = rng.choices(PROVINCES, weights)[0]
        founded = datetime.date(1970, 1, 1) + datetime.timedelta(days=rng.randrange(0, 20_000))
        members = max(20, int(rng.lognormvariate(4.5, 0.9)))
        modal = round(rng.lognormvariate(18.0, 0.8) * capital_level[province], -3)
        assets = round(modal * rng.uniform(1.1, 6.0), -3)
        rows.append(
            (
                i,
                f"Koperasi {rng.choice(_NAME_A)} {rng.choice(_NAME_B)} {i}",
                f"{rng.randrange(100, 999)}/BH/{founded.year}/{i:05d}",
                province,
                rng.choice((capital, *regencies)),
                rng.choice(TYPES),
                founded,
                members,
                modal,
                assets,
                rng.choice(STATUSES),
            )
        )
    return rows


async def ensure_demo_dataset(conn: asyncpg.Connection) -> bool:
    """Load the dataset and the reader role unless this version is there; True if it loaded."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        present = await conn.fetchval("SELECT to_regclass('koperasi.dataset_info') IS NOT NULL")
        if present and await conn.fetchval(
            "SELECT count(*) FROM koperasi.dataset_info WHERE version = $1 AND seed = $2",
            DATASET_VERSION,
            SEED,
        ):
            await _grant_reader(conn)
            return False
        await conn.execute(_SCHEMA_SQL)
        await conn.executemany(
            "INSERT INTO koperasi.provinsi (nama, pulau, ibu_kota) VALUES ($1, $2, $3)",
            [(name, island, capital) for name, island, capital, _ in PROVINCES],
        )
        await conn.copy_records_to_table(
            "koperasi",
            schema_name="koperasi",
            records=_rows(random.Random(SEED)),
            columns=[
                "id",
                "nama",
                "nomor_badan_hukum",
                "provinsi",
                "kabupaten_kota",
                "jenis",
                "tanggal_berdiri",
                "jumlah_anggota",
                "modal_awal",
                "total_aset",
                "status",
            ],
        )
        await conn.execute(
            "INSERT INTO koperasi.dataset_info VALUES ($1, $2, $3)", DATASET_VERSION, SEED, ROWS
        )
        await _grant_reader(conn)
        return True


async def _grant_reader(conn: asyncpg.Connection) -> None:
    """A login role that can read the dataset and nothing else, read-only by default."""
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", READER_ROLE)
    if not exists:
        await conn.execute(f"CREATE ROLE {READER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    await conn.execute(f"ALTER ROLE {READER_ROLE} SET default_transaction_read_only = on")
    await conn.execute(f"ALTER ROLE {READER_ROLE} SET statement_timeout = '10s'")
    await conn.execute(f"GRANT USAGE ON SCHEMA koperasi TO {READER_ROLE}")
    await conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA koperasi TO {READER_ROLE}")
    await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {READER_ROLE}")


def reader_dsn(admin_dsn: str) -> str:
    """The same server and database as ``admin_dsn``, connecting as the read-only role."""
    parts = urlsplit(admin_dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{READER_ROLE}@{host}"))
