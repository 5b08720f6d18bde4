//! STOP, START and HELP, in any state of a conversation. The rules are in the module doc of
//! `understand`; this file keeps them in the same order.

use super::Keyword;
use super::text::{Glue, Tk, Tokens};
use super::vocab::Phrases;
use std::ops::Range;
use std::sync::LazyLock;

/// Reads a keyword that works in any state of a conversation, whatever the language.
pub fn keyword(text: &str) -> Option<Keyword> {
    let t = Tokens::new(text);
    if opts_out(&t) {
        return Some(Keyword::OptOut);
    }
    let whole = 0..t.len();
    if only(&t, whole.clone(), is_opt_in, is_polite) {
        return Some(Keyword::OptIn);
    }
    if only(&t, whole, is_help, |w| {
        is_polite(w) || matches!(w, "moi" | "me" | "a" | "svp")
    }) {
        return Some(Keyword::Help);
    }
    None
}

fn opts_out(t: &Tokens) -> bool {
    // 1. A clause that is nothing but an opt-out word, with politeness around it: "Stop!",
    //    "STOP SMS", "stop svp", "please stop", "Arrêt SVP.", "non stop", "Merci. STOP".
    let mut start = 0;
    for k in 0..=t.len() {
        if k == t.len() || t.is_break(k) {
            if only(t, start..k, is_opt_out, is_opt_out_padding) {
                return true;
            }
            start = k + 1;
        }
    }
    // 2. A word that only ever means it, anywhere: "comment me désabonner ?".
    let words = || (0..t.len()).filter_map(|k| t.word(k).map(|w| (k, w)));
    if words()
        .any(|(k, w)| is_unambiguous_opt_out(w) || (w == "opt" && t.word(k + 1) == Some("out")))
    {
        return true;
    }
    // 3. STOP opening or closing the reply as a keyword: in capitals ("Livreur en retard
    //    STOP", "STOP je n'ai rien commandé"), closing it without an article ("livreur en
    //    retard stop", not "on a fait un stop"), or opening it with politeness ("stop svp je
    //    n'ai rien commandé", not "stop and go").
    let stop_at = |k: usize| {
        t.word(k)
            .is_some_and(|w| matches!(w, "stop" | "arret") || is_stretched_stop(w))
            && t.tok(k).is_some_and(|tok| tok.glue != Glue::Hyphen)
    };
    let capitals = |k: usize| {
        let original = t.original(k);
        stop_at(k) && !original.chars().any(char::is_lowercase)
    };
    let first_word = (0..t.len()).find(|&k| t.kind(k) == Some(Tk::Word));
    let last_word = (0..t.len()).rev().find(|&k| t.kind(k) == Some(Tk::Word));
    if first_word.is_some_and(|k| {
        capitals(k) || (stop_at(k) && t.word(k + 1).is_some_and(is_opt_out_padding))
    }) {
        return true;
    }
    if last_word.is_some_and(|k| {
        capitals(k)
            || (stop_at(k)
                && k > 0
                && !t
                    .word(k - 1)
                    .is_some_and(|w| is_determiner(w) || matches!(w, "non" | "no")))
    }) {
        return true;
    }
    // 4. An explicit request: "je ne veux plus recevoir de sms", "don't text me".
    for (k, _) in words() {
        if let Some((needs_object, len)) = REQUESTS.longest_at(t, k) {
            if !needs_object || about_messages(t, k + len, true) {
                return true;
            }
        }
    }
    // 5. A stop verb about the messages: "stop the calls please", "arrêtez de m'envoyer des
    //    messages" — but not "le livreur ne s'est pas arrêté".
    words().any(|(k, w)| is_stop_verb(t, k, w) && about_messages(t, k + 1, false))
}

/// Whether tokens `range` hold at least one `core` word and otherwise only `padding` words,
/// punctuation and emoji. A core word joined by a hyphen ("non-stop") does not count.
fn only(
    t: &Tokens,
    range: Range<usize>,
    core: impl Fn(&str) -> bool,
    padding: impl Fn(&str) -> bool,
) -> bool {
    let mut cores = 0;
    for k in range {
        match t.kind(k) {
            Some(Tk::Word) => {
                let w = t.word(k).unwrap_or_default();
                // "non-stop" is an adverb; "aidez-moi" is still a call for help.
                let hyphenated = t.tok(k).is_some_and(|tok| tok.glue == Glue::Hyphen);
                if (core(w) || is_stretched_stop(w)) && !hyphenated {
                    cores += 1;
                } else if !padding(w) {
                    return false;
                }
            }
            Some(Tk::Number | Tk::Stars) | None => return false,
            _ => {}
        }
    }
    cores > 0
}

/// Whether the words from token `from` on, in the same clause, are about the messages: a
/// messaging word comes before any other content word ("je ne veux plus recevoir de sms" but
/// not "je ne veux plus recevoir de colis abîmés"), or, when `open_ended`, the clause ends
/// ("je ne veux plus recevoir").
fn about_messages(t: &Tokens, from: usize, open_ended: bool) -> bool {
    let mut k = from;
    while k < t.len() && !t.is_break(k) {
        if let Some(w) = t.word(k) {
            if is_messaging(w) {
                return true;
            }
            if !is_opt_out_padding(w) && !is_determiner(w) {
                return false;
            }
        }
        k += 1;
    }
    open_ended
}

/// "stooop", "stoppp": a STOP shouted with its letters held.
fn is_stretched_stop(w: &str) -> bool {
    let rest = w.strip_prefix("st").unwrap_or_default();
    let ps = rest.trim_start_matches('o');
    rest.len() > ps.len() && !ps.is_empty() && ps.bytes().all(|b| b == b'p')
}

fn is_stop_verb(t: &Tokens, k: usize, w: &str) -> bool {
    let verb = is_stretched_stop(w)
        || matches!(
            w,
            "stop"
                | "stoppez"
                | "stopper"
                | "arret"
                | "arrete"
                | "arretez"
                | "arreter"
                | "cessez"
                | "quit"
        );
    // "arrêté" with its accent is a participle ("ne s'est pas arrêté"), never an order.
    let participle = ["é", "és", "ée", "ées", "É"]
        .iter()
        .any(|end| t.original(k).ends_with(end));
    verb && !participle
}

fn is_opt_out(w: &str) -> bool {
    is_unambiguous_opt_out(w)
        || matches!(
            w,
            "stop"
                | "stopp"
                | "stoppez"
                | "stopper"
                | "arret"
                | "arrete"
                | "arretez"
                | "arreter"
                | "cancel"
                | "end"
                | "quit"
                | "revoke"
        )
}

fn is_unambiguous_opt_out(w: &str) -> bool {
    matches!(
        w,
        "stopall"
            | "unsubscribe"
            | "unsub"
            | "optout"
            | "desabonner"
            | "desabonnez"
            | "desabonne"
            | "desabonnement"
            | "desinscrire"
            | "desinscrivez"
            | "desinscris"
            | "desinscription"
    )
}

fn is_opt_in(w: &str) -> bool {
    matches!(w, "start" | "unstop" | "subscribe" | "resubscribe")
}

fn is_help(w: &str) -> bool {
    matches!(
        w,
        "help" | "aide" | "aidez" | "l'aide" | "info" | "infos" | "information" | "informations"
    )
}

fn is_polite(w: &str) -> bool {
    matches!(
        w,
        "merci"
            | "svp"
            | "stp"
            | "s'il"
            | "sil"
            | "vous"
            | "te"
            | "plait"
            | "please"
            | "pls"
            | "plz"
            | "thanks"
            | "thank"
            | "you"
            | "thx"
            | "bonjour"
            | "bonsoir"
            | "hello"
            | "hi"
            | "ok"
            | "okay"
            | "bye"
            | "beaucoup"
            | "much"
            | "so"
    )
}

/// What may stand around an opt-out word in a clause that is only that: politeness, what is to
/// stop, and a plain "no" ("non stop" is "non. STOP": a missed STOP is the costlier mistake).
fn is_opt_out_padding(w: &str) -> bool {
    is_polite(w)
        || matches!(
            w,
            "sms"
                | "texto"
                | "textos"
                | "message"
                | "messages"
                | "msg"
                | "text"
                | "texts"
                | "all"
                | "tout"
                | "tous"
                | "moi"
                | "me"
                | "non"
                | "no"
                | "pub"
                | "pubs"
                | "it"
                | "now"
                | "maintenant"
                | "this"
                | "ca"
        )
}

fn is_determiner(w: &str) -> bool {
    matches!(
        w,
        "le" | "la"
            | "l'"
            | "un"
            | "une"
            | "du"
            | "au"
            | "aux"
            | "a"
            | "mes"
            | "my"
            | "of"
            | "les"
            | "des"
            | "de"
            | "d'"
            | "vos"
            | "votre"
            | "ces"
            | "cet"
            | "ce"
            | "the"
            | "your"
            | "these"
            | "those"
            | "any"
            | "all"
            | "me"
            | "m'"
            | "to"
    )
}

fn is_messaging(w: &str) -> bool {
    matches!(
        w,
        "sms"
            | "texto"
            | "textos"
            | "message"
            | "messages"
            | "msg"
            | "msgs"
            | "text"
            | "texts"
            | "texting"
            | "sending"
            | "send"
            | "messaging"
            | "contacting"
            | "calling"
            | "call"
            | "calls"
            | "appel"
            | "appels"
            | "appeler"
            | "m'appeler"
            | "envoi"
            | "envois"
            | "envoyer"
            | "m'envoyer"
            | "relance"
            | "relances"
            | "relancer"
            | "contacter"
            | "m'ecrire"
            | "ecrire"
            | "notification"
            | "notifications"
            | "pub"
            | "pubs"
            | "publicite"
            | "publicites"
            | "spam"
            | "spams"
            | "spamming"
            | "sondage"
            | "sondages"
            | "questionnaire"
            | "questionnaires"
            | "survey"
            | "surveys"
            | "mail"
            | "mails"
            | "email"
            | "emails"
            | "emailing"
            | "harceler"
            | "harcelement"
            | "bothering"
            | "sollicitations"
    )
}

/// Requests to stop written as sentences. `true` marks a phrase that needs its object to be
/// the messages ("ne plus recevoir [de sms]").
static REQUESTS: LazyLock<Phrases<bool>> = LazyLock::new(|| {
    Phrases::new(&[
        ("plus recevoir", true),
        ("ne m'envoyez plus", false),
        ("m'envoyez plus", false),
        ("ne me contactez plus", false),
        ("me contactez plus", false),
        ("plus me contacter", false),
        ("plus m'envoyer", false),
        ("plus de sms", false),
        ("plus de messages", false),
        ("plus de message", false),
        ("plus de textos", false),
        ("plus de texto", false),
        ("plus de relances", false),
        ("plus de sondages", false),
        ("plus de sollicitations", false),
        ("retirez moi", false),
        ("retire moi", false),
        ("supprimez mon numero", false),
        ("supprimer mon numero", false),
        ("effacez mon numero", false),
        ("laissez moi tranquille", false),
        ("fichez moi la paix", false),
        ("foutez moi la paix", false),
        ("don't text", false),
        ("dont text", false),
        ("do not text", false),
        ("don't message", false),
        ("do not message", false),
        ("don't contact", false),
        ("dont contact", false),
        ("do not contact", false),
        ("don't send", false),
        ("dont send", false),
        ("do not send", false),
        ("no more texts", false),
        ("no more text", false),
        ("no more messages", false),
        ("no more sms", false),
        ("remove me", false),
        ("remove my number", false),
        ("take me off", false),
        ("leave me alone", false),
        ("stop texting", false),
        ("stop sending", false),
        ("stop messaging", false),
        ("stop contacting", false),
        ("stop calling", false),
        ("stop spamming", false),
        ("stop emailing", false),
    ])
});
