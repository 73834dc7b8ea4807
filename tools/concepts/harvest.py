#!/usr/bin/env python3
"""Harvest the concept lexicon's non-English lines from the multilingual proximity rules.

Each proximity group of policies/multilingual_core.yaml and multilingual_intent.yaml plays one
role in its rule (the override verb, the instruction noun, the scope word ...). ROLES names the
role of each group by rule kind and group count; the words of a group become that concept's words
in the rule's language. Unordered concept pairs are what the learned stage reads, so a language
that puts the noun before the verb still yields the same pair.

Usage: python3 tools/concepts/harvest.py > /tmp/harvested.txt (then paste below the English block
of src/detect/concepts.txt, which is written by hand).
"""
import collections
import sys

import yaml

ROLES = {
    ("dev_mode", 2): ["persona", "devmode"],
    ("new_task_free", 2): ["newtask", "unrestricted"],
    ("new_task_free", 3): ["newtask", "without", "restriction"],
    ("override", 2): ["ignore", "instruction"],
    ("override", 3): ["scope", "instruction", "ignore"],
    ("override_above", 2): ["ignore", "scope"],
    ("override_ba", 3): ["scope", "instruction", "ignore"],
    ("override_own", 3): ["ignore", "scope", "instruction"],
    ("override_prior", 3): ["ignore", "instruction", "scope"],
    ("override_rev", 2): ["instruction", "ignore"],
    ("override_scope", 3): ["ignore", "scope", "instruction"],
    ("override_scope_rev", 3): ["scope", "instruction", "ignore"],
    ("persona_free", 2): ["persona", "unrestricted"],
    ("persona_free", 3): ["persona", "without", "restriction"],
    ("repeat_above", 2): ["reveal", "sysprompt"],
    ("reveal", 2): ["reveal", "sysprompt"],
    ("reveal", 3): ["reveal", "scope", "sysprompt"],
    ("reveal_own", 2): ["reveal", "sysprompt"],
    ("reveal_rev", 2): ["sysprompt", "reveal"],
    ("reveal_rev", 3): ["scope", "sysprompt", "reveal"],
    ("reveal_system", 2): ["reveal", "sysprompt"],
    ("reveal_system", 3): ["sysprompt", "sysprompt", "reveal"],
    ("unrestricted", 2): ["persona", "unrestricted"],
    ("unrestricted", 3): ["persona", "without", "restriction"],
    ("unrestricted", 4): ["persona", "ai", "without", "restriction"],
    ("unrestricted_rev", 2): ["unrestricted", "persona"],
    ("void", 2): ["instruction", "void"],
    ("void_rev", 2): ["void", "instruction"],
}

# Languages whose rules list the object before the verb (Japanese, Korean, Turkish, Hindi,
# Bengali, Persian): the same kinds, other group orders. Checked first; the first version of this
# tool read them with the verb-first roles, so "無視して" was labelled an instruction noun.
ROLES_VERB_LAST = {
    ("override", 2): ["instruction", "ignore"],
    ("override_scope", 3): ["scope", "instruction", "ignore"],
    ("override_prior", 3): ["instruction", "scope", "ignore"],
    ("reveal", 2): ["sysprompt", "reveal"],
    ("reveal", 3): ["scope", "sysprompt", "reveal"],
    ("reveal_system", 3): ["sysprompt", "sysprompt", "reveal"],
    ("unrestricted", 4): ["persona", "scope", "restriction", "without"],
}
VERB_LAST = {"ja", "ko", "tr", "hi", "bn", "fa"}
# Single rules whose groups follow neither table.
ROLES_RULE = {
    "multilingual_core.ko.unrestricted": ["newtask", "persona", "unrestricted"],
}


def roles_of(rule_id: str, lang: str, kind: str, n: int):
    if rule_id in ROLES_RULE:
        return ROLES_RULE[rule_id]
    if lang in VERB_LAST and (kind, n) in ROLES_VERB_LAST:
        return ROLES_VERB_LAST[(kind, n)]
    return ROLES.get((kind, n))


def main() -> None:
    words = collections.defaultdict(dict)  # (concept, lang) -> ordered set of words
    for path in ("policies/multilingual_core.yaml", "policies/multilingual_intent.yaml"):
        for rule in yaml.safe_load(open(path, encoding="utf-8"))["rules"]:
            px = rule.get("proximity")
            if not px:
                continue
            parts = rule["id"].split(".")
            lang, kind = parts[1], parts[-1]
            roles = roles_of(rule["id"], lang, kind, len(px["groups"]))
            if roles is None:
                sys.exit(f"no roles for {rule['id']}")
            for concept, group in zip(roles, px["groups"]):
                for w in group:
                    if "|" not in w:
                        words[(concept, lang)][w] = None
    for (concept, lang), ws in sorted(words.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"{concept} {lang}: {' | '.join(ws)}")


if __name__ == "__main__":
    main()
