"""A pure-Python port of google-research/bert tokenization.py (FullTokenizer), Python 3 only.

Used by tinybert-c as the speed baseline in bench/bench_tokenizer.c and as an independent
reference in tests/unit/test_tokenizer.c (random-text comparison). Logic kept line for line:
_clean_text, _tokenize_chinese_chars, whitespace_tokenize, lower + NFD + drop Mn, punctuation
split, greedy longest-match-first WordPiece.

    python3 bert_tokenization.py VOCAB [--max-chars N] [--cased] < lines  -> one line of ids per line
    python3 bert_tokenization.py VOCAB --bench FILE    -> one JSON line: lines, bytes, tokens, seconds
"""
import sys
import unicodedata


def load_vocab(path):
    vocab = {}
    with open(path, "r", encoding="utf-8") as f:
        for index, token in enumerate(f):
            vocab[token.strip()] = index
    return vocab


def whitespace_tokenize(text):
    text = text.strip()
    if not text:
        return []
    return text.split()


def _is_whitespace(char):
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char):
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    cp = ord(char)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or (0x20000 <= cp <= 0x2A6DF) or
            (0x2A700 <= cp <= 0x2B73F) or (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF) or
            (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))


class BasicTokenizer:
    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        text = self._clean_text(text)
        text = self._tokenize_chinese_chars(text)
        split_tokens = []
        for token in whitespace_tokenize(text):
            if self.do_lower_case:
                token = token.lower()
                token = self._run_strip_accents(token)
            split_tokens.extend(self._run_split_on_punc(token))
        return whitespace_tokenize(" ".join(split_tokens))

    def _run_strip_accents(self, text):
        text = unicodedata.normalize("NFD", text)
        return "".join(c for c in text if unicodedata.category(c) != "Mn")

    def _run_split_on_punc(self, text):
        output = []
        start_new_word = True
        for char in text:
            if _is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(x) for x in output]

    def _tokenize_chinese_chars(self, text):
        output = []
        for char in text:
            if _is_chinese_char(ord(char)):
                output.extend((" ", char, " "))
            else:
                output.append(char)
        return "".join(output)

    def _clean_text(self, text):
        output = []
        for char in text:
            cp = ord(char)
            if cp == 0 or cp == 0xFFFD or _is_control(char):
                continue
            output.append(" " if _is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer:
    def __init__(self, vocab, unk_token="[UNK]", max_input_chars_per_word=100):
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word

    def tokenize(self, text):
        output_tokens = []
        for token in whitespace_tokenize(text):
            chars = list(token)
            if len(chars) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            is_bad = False
            start = 0
            sub_tokens = []
            while start < len(chars):
                end = len(chars)
                cur_substr = None
                while start < end:
                    substr = "".join(chars[start:end])
                    if start > 0:
                        substr = "##" + substr
                    if substr in self.vocab:
                        cur_substr = substr
                        break
                    end -= 1
                if cur_substr is None:
                    is_bad = True
                    break
                sub_tokens.append(cur_substr)
                start = end
            if is_bad:
                output_tokens.append(self.unk_token)
            else:
                output_tokens.extend(sub_tokens)
        return output_tokens


class FullTokenizer:
    def __init__(self, vocab_file, do_lower_case=True, max_input_chars_per_word=100):
        self.vocab = load_vocab(vocab_file)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, max_input_chars_per_word=max_input_chars_per_word)

    def tokenize(self, text):
        split_tokens = []
        for token in self.basic_tokenizer.tokenize(text):
            split_tokens.extend(self.wordpiece_tokenizer.tokenize(token))
        return split_tokens

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[t] for t in tokens]


def bench(tok, path):
    import json
    import time
    data = open(path, "rb").read()
    lines = data.decode("utf-8").split("\n")
    t0 = time.perf_counter()
    tokens = 0
    for line in lines:
        tokens += len(tok.convert_tokens_to_ids(tok.tokenize(line)))
    seconds = time.perf_counter() - t0
    print(json.dumps({"lines": len(lines), "bytes": len(data), "tokens": tokens, "seconds": seconds}))


def main():
    args = sys.argv[1:]
    bench_file = None
    if "--bench" in args:
        i = args.index("--bench")
        bench_file = args[i + 1]
        del args[i:i + 2]
    max_chars = 100
    lower = True
    if "--max-chars" in args:
        i = args.index("--max-chars")
        max_chars = int(args[i + 1])
        del args[i:i + 2]
    if "--cased" in args:
        args.remove("--cased")
        lower = False
    tok = FullTokenizer(args[0], do_lower_case=lower, max_input_chars_per_word=max_chars)
    if bench_file:
        bench(tok, bench_file)
        return
    data = sys.stdin.buffer.read().decode("utf-8")
    out = []
    for line in data.split("\n"):
        out.append(" ".join(str(i) for i in tok.convert_tokens_to_ids(tok.tokenize(line))))
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
