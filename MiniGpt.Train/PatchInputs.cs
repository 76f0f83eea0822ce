using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt.Data;
using MiniGpt.Model;
using MiniGpt.Patching;

namespace MiniGpt.Train;

/// <summary>
/// The clean/corrupted pairs of the patch verb, from the command line or a pairs file, as token ids.
/// Text goes through the checkpoint's tokenizer; a checkpoint without one (the induction task's models)
/// takes token ids written as numbers ("3 17 5"). An answer or wrong token must be exactly one token,
/// since the metrics read one logit for it.
/// </summary>
public sealed class PatchInputs(ITokenizer? tokenizer, ModelConfig config)
{
    public TokenText Text { get; } = new(tokenizer);

    /// <summary>The tokens of a prompt: text through the tokenizer, or ids without one. what names it in errors ("--clean", "pairs.jsonl line 3: clean").</summary>
    public int[] Prompt(string s, string what)
    {
        if (tokenizer == null) return Ids(s, what);
        var ids = tokenizer.Encode(s, what);
        if (ids.Length == 0) throw new UserError($"{what} is empty: give at least one token of text");
        return ids;
    }

    /// <summary>One token: text that the tokenizer makes exactly one token of, or (without a tokenizer) an id.</summary>
    public int Token(string s, string what)
    {
        if (tokenizer == null)
        {
            var ids = Ids(s, what);
            if (ids.Length != 1) throw new UserError($"{what} '{s}' is {ids.Length} token ids: give a single token id");
            return ids[0];
        }
        var t = tokenizer.Encode(s, what);
        if (t.Length != 1)
            throw new UserError($"{what} '{s}' is {t.Length} tokens in this tokenizer ({tokenizer.Name}: {string.Join(" ", t.Select(id => $"'{Text.Show(id)}'"))}): give a single token");
        return t[0];
    }

    /// <summary>Whitespace- or comma-separated token ids, each in [0, d_vocab).</summary>
    public int[] Ids(string s, string what)
    {
        var parts = s.Split([' ', ',', '\t', '\n', '\r'], StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new UserError($"{what} is empty: give token ids such as \"3 17 5\"");
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out ids[i]))
                throw new UserError($"{what}: '{parts[i]}' is not a token id; the checkpoint has no tokenizer, so give ids in [0, {config.DVocab}) such as \"3 17 5\"");
            if (ids[i] >= config.DVocab) throw new UserError($"{what}: token {ids[i]} is outside the vocabulary [0, {config.DVocab})");
        }
        return ids;
    }

    /// <summary>One pair from the command line; the metric reads the last position.</summary>
    public PatchPrompts Single(string clean, string corrupt, string answer, string wrong)
    {
        var cl = Prompt(clean, "--clean");
        var co = Prompt(corrupt, "--corrupt");
        int a = Token(answer, "--answer"), w = Token(wrong, "--wrong");
        if (a == w) throw new UserError($"--answer and --wrong are the same token ('{Text.Show(a)}'): the logit difference would be 0; give two different tokens");
        return PatchPrompts.Single(cl, co, a, w, config.DVocab, config.NCtx,
            $"'{Text.ShowAll(cl)}' vs '{Text.ShowAll(co)}', answer '{Text.Show(a)}' against '{Text.Show(w)}'");
    }

    /// <summary>
    /// A pairs file: JSON lines, one pair per line (blank lines and lines starting with # are skipped):
    ///   {"clean": "…", "corrupt": "…", "answer": " x", "wrong": " y", "position": -1}
    /// clean/corrupt are text (through the tokenizer) or arrays of token ids; answer/wrong are text of one
    /// token or an id; position (optional, default −1 = the last token) is where the metric reads the
    /// prediction of the next token, negative counting from the end. A pair's clean and corrupted prompts must be one
    /// length; pairs of different lengths are right-padded (token 0) into one batch, each target inside its own pair.
    /// </summary>
    public PatchPrompts File(string path)
    {
        if (!System.IO.File.Exists(path)) throw new UserError($"--pairs '{path}' does not exist: give a JSON-lines file of pairs (see patch --help)");
        var clean = new List<int[]>();
        var corrupt = new List<int[]>();
        var targets = new List<PatchTarget[]>();
        string name = Path.GetFileName(path);
        int lineNo = 0;
        foreach (string raw in System.IO.File.ReadLines(path))
        {
            lineNo++;
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            string at = $"{name} line {lineNo}";
            JsonObject o;
            // a key given twice ({"clean": "abc", "clean": "abd"}) is refused by the parser (which of the two was meant is a
            // guess), so it is a JsonException here, not an ArgumentException when the object is first read
            try { o = JsonNode.Parse(line, documentOptions: NoDuplicates) as JsonObject ?? throw new UserError($"{at} is not a JSON object: write one {{\"clean\": …, \"corrupt\": …, \"answer\": …, \"wrong\": …}} per line"); }
            catch (JsonException e) { throw new UserError($"{at} is not valid JSON ({e.Message.Split('.')[0]}): write one object per line, each key once"); }
            foreach (var key in o.Select(kv => kv.Key))
                if (key is not ("clean" or "corrupt" or "answer" or "wrong" or "position"))
                    throw new UserError($"{at}: unknown key '{key}': use clean, corrupt, answer, wrong and position");
            var cl = PromptNode(o["clean"], $"{at}: clean");
            var co = PromptNode(o["corrupt"], $"{at}: corrupt");
            int a = TokenNode(o["answer"], $"{at}: answer"), w = TokenNode(o["wrong"], $"{at}: wrong");
            int pos = o["position"] is null ? -1 : IntNode(o["position"], $"{at}: position");
            if (pos < 0) pos += cl.Length;
            if (pos < 0 || pos >= cl.Length) throw new UserError($"{at}: position {IntNode(o["position"], "")} is outside the clean prompt's {cl.Length} tokens");
            clean.Add(cl); corrupt.Add(co); targets.Add([new PatchTarget(pos, a, w)]);
        }
        if (clean.Count == 0) throw new UserError($"--pairs '{path}' holds no pairs: write one JSON object per line (see patch --help)");
        // pairs of different lengths run as one batch, right-padded (token 0): causal attention keeps the padding out of every target
        int shortest = clean.Min(c => c.Length), longest = clean.Max(c => c.Length);
        string padded = shortest == longest ? "" : $", {shortest}–{longest} tokens right-padded to {longest}";
        return PatchPrompts.Create(clean, corrupt, targets, config.DVocab, config.NCtx, $"{clean.Count} pairs from {name}{padded}", padToken: 0);
    }

    private static readonly JsonDocumentOptions NoDuplicates = new() { AllowDuplicateProperties = false };

    private int[] PromptNode(JsonNode? n, string what) => n switch
    {
        null => throw new UserError($"{what} is missing: every line needs clean, corrupt, answer and wrong"),
        JsonArray a => a.Select((x, i) => CheckId(IntNode(x, $"{what}[{i}]"), what)).ToArray() is { Length: > 0 } ids ? ids
            : throw new UserError($"{what} is an empty list: give at least one token"),
        JsonValue v when v.TryGetValue(out string? s) => Prompt(s, what),
        _ => throw new UserError($"{what} must be text or a list of token ids"),
    };

    private int TokenNode(JsonNode? n, string what) => n switch
    {
        null => throw new UserError($"{what} is missing: every line needs clean, corrupt, answer and wrong"),
        JsonValue v when v.TryGetValue(out string? s) => Token(s, what),
        _ => CheckId(IntNode(n, what), what),
    };

    private static int IntNode(JsonNode? n, string what) =>
        n is JsonValue v && v.TryGetValue(out int i) ? i
        : n is JsonValue d && d.TryGetValue(out double x) && x == Math.Floor(x) && Math.Abs(x) < int.MaxValue ? (int)x
        : throw new UserError($"{what} must be an integer");

    private int CheckId(int id, string what) =>
        id >= 0 && id < config.DVocab ? id : throw new UserError($"{what}: token {id} is outside the vocabulary [0, {config.DVocab})");
}
