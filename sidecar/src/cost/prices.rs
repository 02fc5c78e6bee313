//! The built-in price table (`prices.yaml`) and how a model name finds its price.
//!
//! Prices belong to a [`Vendor`], the company whose price list applies: a provider's kind
//! names it, except for OpenAI-compatible servers, where the host of `baseUrl` does
//! (DeepSeek and Mistral speak OpenAI's protocol at their own prices; vLLM or Ollama have
//! none). Azure OpenAI bills the OpenAI price of the model a deployment serves.
//!
//! A model name finds its price by, in order:
//! 1. an exact entry (`gpt-4o-2024-05-13` has its own, older price);
//! 2. a documented alias of an entry (`aliases:` in the YAML);
//! 3. the vendor's dated-snapshot rule: the name minus a trailing snapshot date, in the
//!    vendor's own format, then 1 and 2 again (`gpt-4o-2024-08-06` → `gpt-4o`,
//!    `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`, `gemini-2.0-flash-001` →
//!    `gemini-2.0-flash`).
//!
//! Nothing fuzzier: a near miss (`gpt-4o-mini-foo`, `claude-sonnet-4`) has no price, so
//! a model the table does not know is never billed at another model's rates.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::LazyLock;

use modelroute_crds::v1alpha1::ProviderKind;
use serde::Deserialize;

use super::{Price, Rate, Rates, Tier};

/// The table compiled into the sidecar; parsed on first use.
const BUILTIN_YAML: &str = include_str!("prices.yaml");

static BUILTIN: LazyLock<Result<PriceTable, PriceTableError>> =
    LazyLock::new(|| PriceTable::parse(BUILTIN_YAML));

/// The company whose price list applies to a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Vendor {
    OpenAi,
    Anthropic,
    Gemini,
    Mistral,
    DeepSeek,
}

/// Prices per vendor and model, with where each vendor's came from.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    vendors: BTreeMap<Vendor, VendorPrices>,
}

/// One vendor's price list.
#[derive(Clone, Debug, Default)]
pub struct VendorPrices {
    /// The page the prices were taken from.
    pub source: String,
    /// The day they were taken (`YYYY-MM-DD`).
    pub taken: String,
    models: HashMap<Box<str>, Price>,
    /// Alias -> the entry it names.
    aliases: HashMap<Box<str>, Box<str>>,
}

/// Why a price table was refused: every problem, each naming its vendor and model.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid price table: {}", problems.join("; "))]
pub struct PriceTableError {
    pub problems: Vec<String>,
}

/// The YAML document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    vendors: BTreeMap<String, VendorFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorFile {
    source: String,
    taken: String,
    models: BTreeMap<String, ModelFile>,
}

/// A model's rates in USD per million tokens. Left out: `cachedInput` is `input` (no
/// discount), `cacheWrite` is `input` (no write fee), `cacheWrite1h` is `cacheWrite`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ModelFile {
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    tiers: Vec<TierFile>,
}

/// Rates for prompts longer than `above` tokens; the same defaults as [`ModelFile`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TierFile {
    above: u64,
    input: f64,
    output: f64,
    cached_input: Option<f64>,
    cache_write: Option<f64>,
    cache_write_1h: Option<f64>,
}

// === impl Vendor ===

impl Vendor {
    pub const ALL: [Vendor; 5] = [
        Vendor::OpenAi,
        Vendor::Anthropic,
        Vendor::Gemini,
        Vendor::Mistral,
        Vendor::DeepSeek,
    ];

    /// The vendor's key in `prices.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::OpenAi => "openai",
            Vendor::Anthropic => "anthropic",
            Vendor::Gemini => "gemini",
            Vendor::Mistral => "mistral",
            Vendor::DeepSeek => "deepseek",
        }
    }

    /// The vendor whose prices apply to a provider of `kind` at `base_url` (`None`: the
    /// kind's public endpoint). A known vendor host decides first, since DeepSeek also
    /// speaks Anthropic's protocol; Azure OpenAI bills OpenAI's prices; any other host of
    /// an OpenAI, Anthropic or Gemini kind (vLLM, Ollama, a proxy) has no built-in price.
    pub fn of(kind: ProviderKind, base_url: Option<&str>) -> Option<Vendor> {
        let host = base_url.map(host_of);
        let by_host = match host {
            Some("api.openai.com") => Some(Vendor::OpenAi),
            Some("api.anthropic.com") => Some(Vendor::Anthropic),
            Some("generativelanguage.googleapis.com") => Some(Vendor::Gemini),
            Some("api.mistral.ai") => Some(Vendor::Mistral),
            Some("api.deepseek.com") => Some(Vendor::DeepSeek),
            _ => None,
        };
        match (kind, host) {
            (ProviderKind::Mock, _) => None,
            (ProviderKind::AzureOpenAi, _) => Some(Vendor::OpenAi),
            (ProviderKind::OpenAi, None) => Some(Vendor::OpenAi),
            (ProviderKind::Anthropic, None) => Some(Vendor::Anthropic),
            (ProviderKind::Gemini, None) => Some(Vendor::Gemini),
            (_, Some(_)) => by_host,
        }
    }

    /// `name` without a trailing snapshot date in this vendor's documented format, if it
    /// has one: OpenAI `-YYYY-MM-DD`, Anthropic `-YYYYMMDD`, Gemini's stable version
    /// `-NNN`. Mistral and DeepSeek put dates in the model names the table lists.
    fn base_of_snapshot(self, name: &str) -> Option<&str> {
        let pattern: &[u8] = match self {
            Vendor::OpenAi => b"-dddd-dd-dd",
            Vendor::Anthropic => b"-dddddddd",
            Vendor::Gemini => b"-ddd",
            Vendor::Mistral | Vendor::DeepSeek => return None,
        };
        let split = name.len().checked_sub(pattern.len())?;
        let (base, suffix) = name.split_at_checked(split)?;
        let matches = suffix.bytes().zip(pattern).all(|(b, p)| match p {
            b'd' => b.is_ascii_digit(),
            p => b == *p,
        });
        (matches && !base.is_empty()).then_some(base)
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host of a URL: between `scheme://` and the first `/`, `:`, `?` or `#`.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let end = rest.find(['/', ':', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

// === impl PriceTable ===

impl PriceTable {
    /// The table compiled into the sidecar. Its content is checked by a unit test, so the
    /// error is for a broken build, never for anything a user does.
    pub fn builtin() -> Result<&'static PriceTable, &'static PriceTableError> {
        BUILTIN.as_ref()
    }

    /// Reads a table in the format of `prices.yaml` and checks every price (see
    /// [`check_rates`]).
    pub fn parse(yaml: &str) -> Result<PriceTable, PriceTableError> {
        let file: TableFile = serde_saphyr::from_str(yaml).map_err(|e| PriceTableError {
            problems: vec![e.to_string()],
        })?;
        let mut problems = Vec::new();
        let mut vendors = BTreeMap::new();
        for (key, file) in file.vendors {
            let Some(vendor) = Vendor::ALL.into_iter().find(|v| v.as_str() == key) else {
                let known: Vec<_> = Vendor::ALL.iter().map(|v| v.as_str()).collect();
                problems.push(format!(
                    "vendors.{key}: unknown vendor (known: {})",
                    known.join(", ")
                ));
                continue;
            };
            vendors.insert(vendor, VendorPrices::build(&key, file, &mut problems));
        }
        if problems.is_empty() {
            Ok(PriceTable { vendors })
        } else {
            Err(PriceTableError { problems })
        }
    }

    /// The price of `model` at `vendor`: the exact entry, an alias, or the dated-snapshot
    /// rule (see the module documentation). `None` when the table does not know it.
    pub fn lookup(&self, vendor: Vendor, model: &str) -> Option<&Price> {
        let (_, price) = self.resolve(vendor, model)?;
        Some(price)
    }

    /// The entry `model` resolves to, with its price.
    pub fn resolve(&self, vendor: Vendor, model: &str) -> Option<(&str, &Price)> {
        let prices = self.vendors.get(&vendor)?;
        prices.entry(model).or_else(|| {
            vendor
                .base_of_snapshot(model)
                .and_then(|base| prices.entry(base))
        })
    }

    /// One vendor's list, with its source and date.
    pub fn vendor(&self, vendor: Vendor) -> Option<&VendorPrices> {
        self.vendors.get(&vendor)
    }
}

// === impl VendorPrices ===

impl VendorPrices {
    /// The models listed, in no particular order.
    pub fn models(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.models.iter().map(|(name, price)| (&**name, price))
    }

    fn entry(&self, name: &str) -> Option<(&str, &Price)> {
        let (name, price) = self.models.get_key_value(name).or_else(|| {
            let target = self.aliases.get(name)?;
            self.models.get_key_value(target)
        })?;
        Some((name, price))
    }

    fn build(key: &str, file: VendorFile, problems: &mut Vec<String>) -> VendorPrices {
        if !file.source.starts_with("https://") {
            problems.push(format!(
                "vendors.{key}.source: `{}` is not an https URL",
                file.source
            ));
        }
        if !is_date(&file.taken) {
            problems.push(format!(
                "vendors.{key}.taken: `{}` is not a date (YYYY-MM-DD)",
                file.taken
            ));
        }
        let mut prices = VendorPrices {
            source: file.source,
            taken: file.taken,
            ..VendorPrices::default()
        };
        for (name, model) in file.models {
            let path = format!("vendors.{key}.models.{name}");
            for alias in &model.aliases {
                if prices.aliases.contains_key(alias.as_str()) {
                    problems.push(format!("{path}.aliases: `{alias}` is listed twice"));
                }
                prices
                    .aliases
                    .insert(alias.as_str().into(), name.as_str().into());
            }
            let Some(price) = price_of(&path, &model, problems) else {
                continue;
            };
            prices.models.insert(name.into_boxed_str(), price);
        }
        // An alias that shadows a model is a typo.
        for (alias, target) in &prices.aliases {
            if prices.models.contains_key(alias) {
                problems.push(format!(
                    "vendors.{key}: `{alias}` is both a model and an alias of `{target}`"
                ));
            }
        }
        prices
    }
}

/// A model's [`Price`] from its YAML, or `None` with the reasons pushed to `problems`.
fn price_of(path: &str, model: &ModelFile, problems: &mut Vec<String>) -> Option<Price> {
    let before = problems.len();
    let base = rates_of(
        path,
        [
            model.input,
            model.cached_input.unwrap_or(model.input),
            model.cache_write.unwrap_or(model.input),
            model
                .cache_write_1h
                .or(model.cache_write)
                .unwrap_or(model.input),
            model.output,
        ],
        problems,
    );
    let mut tiers = Vec::with_capacity(model.tiers.len());
    let mut previous: (u64, Option<Rates>) = (0, base);
    for (i, tier) in model.tiers.iter().enumerate() {
        let path = format!("{path}.tiers[{i}]");
        let rates = rates_of(
            &path,
            [
                tier.input,
                tier.cached_input.unwrap_or(tier.input),
                tier.cache_write.unwrap_or(tier.input),
                tier.cache_write_1h
                    .or(tier.cache_write)
                    .unwrap_or(tier.input),
                tier.output,
            ],
            problems,
        );
        if tier.above <= previous.0 {
            problems.push(format!(
                "{path}.above: {} must be above the previous band's {}",
                tier.above, previous.0
            ));
        }
        if let (Some(lower), Some(rates)) = (previous.1, rates)
            && !at_least(&rates, &lower)
        {
            problems.push(format!(
                "{path}: a long-prompt band must not be cheaper than the band below it"
            ));
        }
        if let Some(rates) = rates {
            tiers.push(Tier {
                above: tier.above,
                rates,
            });
        }
        previous = (tier.above, rates);
    }
    let base = base?;
    (problems.len() == before).then_some(Price { base, tiers })
}

/// Rates from `[input, cached input, cache write, 1h cache write, output]` in USD per
/// million tokens, checked by [`check_rates`].
fn rates_of(path: &str, usd: [f64; 5], problems: &mut Vec<String>) -> Option<Rates> {
    const NAMES: [&str; 5] = [
        "input",
        "cachedInput",
        "cacheWrite",
        "cacheWrite1h",
        "output",
    ];
    let mut rates = [Rate::ZERO; 5];
    let mut ok = true;
    for ((rate, usd), name) in rates.iter_mut().zip(usd).zip(NAMES) {
        match Rate::from_usd_per_million(usd) {
            Ok(r) => *rate = r,
            Err(e) => {
                problems.push(format!("{path}.{name}: {e}"));
                ok = false;
            }
        }
    }
    let [input, cached_input, cache_write, cache_write_1h, output] = rates;
    let rates = Rates {
        input,
        cached_input,
        cache_write,
        cache_write_1h,
        output,
    };
    if !ok {
        return None;
    }
    let before = problems.len();
    for problem in check_rates(&rates) {
        problems.push(format!("{path}: {problem}"));
    }
    (problems.len() == before).then_some(rates)
}

/// What makes a set of rates implausible enough to be a typo: a cache read dearer than
/// the input it replaces, a cache write cheaper than input, a 1-hour write cheaper than a
/// 5-minute one, output cheaper than input (true of every chat model listed; embedding
/// models have no output and list 0), or no input price.
pub fn check_rates(r: &Rates) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, message: String| {
        if !ok {
            problems.push(message);
        }
    };
    check(r.input > Rate::ZERO, "input must be above 0".into());
    check(
        r.cached_input <= r.input,
        format!("cachedInput {} is above input {}", r.cached_input, r.input),
    );
    check(
        r.cache_write >= r.input,
        format!("cacheWrite {} is below input {}", r.cache_write, r.input),
    );
    check(
        r.cache_write_1h >= r.cache_write,
        format!(
            "cacheWrite1h {} is below cacheWrite {}",
            r.cache_write_1h, r.cache_write
        ),
    );
    check(
        r.output >= r.input || r.output == Rate::ZERO,
        format!(
            "output {} is below input {} (0 is allowed: an embedding model)",
            r.output, r.input
        ),
    );
    problems
}

/// Every rate of `a` is at least the same rate of `b`.
fn at_least(a: &Rates, b: &Rates) -> bool {
    a.input >= b.input
        && a.cached_input >= b.cached_input
        && a.cache_write >= b.cache_write
        && a.cache_write_1h >= b.cache_write_1h
        && a.output >= b.output
}

/// `YYYY-MM-DD` with a plausible month and day.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let number = |r: std::ops::Range<usize>| s.get(r).and_then(|d| d.parse::<u32>().ok());
    b.len() == 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && number(5..7).is_some_and(|m| (1..=12).contains(&m))
        && number(8..10).is_some_and(|d| (1..=31).contains(&d))
}

#[cfg(test)]
#[path = "prices_tests.rs"]
mod tests;
