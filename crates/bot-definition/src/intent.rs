//! Intent matching without a model: TF-IDF vectors over stemmed words and
//! character trigrams (so typos and word forms still match), compared by
//! cosine similarity with each declared example utterance; an intent's score
//! is its best example's. Built once per definitions load.

use std::collections::HashMap;

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "to", "of", "in", "on", "for", "at", "is", "are", "am", "be", "do", "does",
    "i", "me", "my", "you", "your", "it", "this", "that", "and", "or", "please", "can", "could",
    "would", "will", "with", "about", "some", "there", "what", "s",
];

/// Trigrams count less than whole words: they catch typos, words decide.
const TRIGRAM_WEIGHT: f32 = 0.35;

fn stem(word: &str) -> &str {
    for suffix in ["ing", "ed", "es", "ly", "s"] {
        if let Some(stem) = word.strip_suffix(suffix)
            && stem.len() >= 3
        {
            return stem;
        }
    }
    word
}

/// Normalised features of a text with their raw weights.
fn features(text: &str) -> HashMap<String, f32> {
    let lower = text.to_lowercase();
    let mut out: HashMap<String, f32> = HashMap::new();
    for word in lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(w))
    {
        let stemmed = stem(word);
        *out.entry(format!("w:{stemmed}")).or_default() += 1.0;
        let padded: Vec<char> = format!(" {stemmed} ").chars().collect();
        for gram in padded.windows(3) {
            *out.entry(format!("c:{}", gram.iter().collect::<String>()))
                .or_default() += TRIGRAM_WEIGHT;
        }
    }
    out
}

type Vector = Vec<(u32, f32)>;

#[derive(Debug, Clone, Default)]
pub struct IntentIndex {
    vocabulary: HashMap<String, u32>,
    idf: Vec<f32>,
    /// (intent index, normalised sparse vector sorted by term)
    examples: Vec<(usize, Vector)>,
}

impl IntentIndex {
    /// `examples`: (intent index, utterance).
    pub fn build(examples: &[(usize, &str)]) -> Self {
        let mut vocabulary = HashMap::new();
        let mut document_frequency: Vec<u32> = Vec::new();
        let raw: Vec<(usize, HashMap<String, f32>)> = examples
            .iter()
            .map(|(intent, text)| (*intent, features(text)))
            .collect();
        for (_, terms) in &raw {
            for term in terms.keys() {
                let next = u32::try_from(vocabulary.len()).unwrap_or(u32::MAX);
                let id = *vocabulary.entry(term.clone()).or_insert(next);
                let slot = id as usize;
                if slot >= document_frequency.len() {
                    document_frequency.resize(slot + 1, 0);
                }
                document_frequency[slot] += 1;
            }
        }
        let documents = raw.len() as f32;
        let idf = document_frequency
            .iter()
            .map(|&df| ((documents + 1.0) / (df as f32 + 1.0)).ln() + 1.0)
            .collect();
        let mut index = Self {
            vocabulary,
            idf,
            examples: Vec::new(),
        };
        index.examples = raw
            .into_iter()
            .map(|(intent, terms)| (intent, index.vector(&terms)))
            .collect();
        index
    }

    fn vector(&self, terms: &HashMap<String, f32>) -> Vector {
        let mut vector: Vector = terms
            .iter()
            .filter_map(|(term, tf)| {
                let id = *self.vocabulary.get(term)?;
                Some((id, tf * self.idf[id as usize]))
            })
            .collect();
        vector.sort_unstable_by_key(|(id, _)| *id);
        let norm = vector.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (_, weight) in &mut vector {
                *weight /= norm;
            }
        }
        vector
    }

    /// The best intent for `text` and its similarity (0-1), if any term is known.
    pub fn best(&self, text: &str) -> Option<(usize, f32)> {
        let terms = features(text);
        let query = self.vector(&terms);
        if query.is_empty() {
            return None;
        }
        // The query vector holds only known terms; scale by how much of the
        // message they are, so a long message with one matching word is weak.
        let total: f32 = terms.values().sum();
        let known: f32 = terms
            .iter()
            .filter(|(term, _)| self.vocabulary.contains_key(*term))
            .map(|(_, tf)| tf)
            .sum();
        let coverage = (known / total).sqrt();
        self.examples
            .iter()
            .map(|(intent, example)| (*intent, (dot(&query, example) * coverage).clamp(0.0, 1.0)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

fn dot(a: &Vector, b: &Vector) -> f32 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> IntentIndex {
        IntentIndex::build(&[
            (0, "what's the weather like today"),
            (0, "will it rain tomorrow"),
            (1, "I want to order a pizza"),
            (1, "get me some food delivered"),
        ])
    }

    #[test]
    fn paraphrases_and_typos_find_their_intent() {
        let index = index();
        assert_eq!(index.best("is it raining tomorow?").unwrap().0, 0);
        assert_eq!(index.best("ordering pizzas now").unwrap().0, 1);
    }

    #[test]
    fn unrelated_text_scores_low() {
        let index = index();
        let score = index
            .best("my cat sleeps on the sofa")
            .map_or(0.0, |(_, s)| s);
        assert!(score < 0.3, "{score}");
        assert!(index.best("").is_none());
    }
}
