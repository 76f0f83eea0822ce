using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Generation;

namespace MiniGpt.Train;

public static class SampleVerb
{
    private static readonly Option<string> CheckpointPath = SharedOptions.Checkpoint.WithHelpLine("model checkpoint with a tokenizer (trained on text): a .safetensors file or a run folder runs/NAME");
    private static readonly Option<string> Prompt = Option.Of("prompt", "text to continue", "\n", "a newline", (_, v) => v);
    private static readonly Option<int> Tokens = Option.Int("tokens", "tokens to generate", 200).Check(n => n >= 0, "must be ≥ 0");
    private static readonly Option<float> Temperature = Option.Float("temperature", "divide logits by this before sampling (0 = greedy)", 1f, shown: "1.0")
        .Check(t => t >= 0, "must be ≥ 0");
    private static readonly Option<int> TopK = Option.Int("top-k", "sample only among the k most likely tokens (0 = all)", 0).Check(k => k >= 0, "must be ≥ 0");
    private static readonly Option<ulong> Seed = Option.ULong("seed", "sampling seed", 1337);
    private static readonly Option<bool> NoCache = Option.Flag("no-cache", "run a forward pass over the whole window for every token (no key/value cache)");
    // checked in Run, so that --help's promise (any text parses) holds
    private static readonly Option<string> Slide = Option.Text("slide",
        "past n_ctx: exact (nanoGPT's window, a whole-window pass per token) or half (re-prefill the last n_ctx/2 tokens once per n_ctx/2; not nanoGPT's logits)",
        "exact").Choices("exact", "half");

    internal static Options Declare() =>
        new Options("sample", "sample: generates tokens from a checkpoint, one at a time, from a prompt (with a key/value cache unless --no-cache).",
            CheckpointPath, Prompt, Tokens, Temperature, TopK, Seed, NoCache, Slide, SharedOptions.Threads);

    public static int Run(string[] args, TextWriter stdout)
    {
        var o = Declare().Parse(args);
        if (o.HelpRequested) { stdout.Write(Declare().Help()); return 0; }
        Cli.ApplyThreads(o);
        string ckpt = o.Get(CheckpointPath);
        int n = o.Get(Tokens);
        float temperature = o.Get(Temperature);
        int topK = o.Get(TopK);
        var rng = new Rng(o.Get(Seed));
        var slide = o.Get(Slide).ToLowerInvariant() switch
        {
            "exact" => SlidePolicy.Exact,
            "half" => SlidePolicy.Half,
            var v => throw new UsageError($"--slide '{v}' is not a policy: use exact (nanoGPT's window) or half"),
        };
        bool cached = !o.Get(NoCache);
        if (!cached && slide != SlidePolicy.Exact) throw new UsageError("--slide half needs the cache: drop --no-cache, or --slide");

        var loaded = Checkpoint.Load(ckpt);
        if (loaded.TokenizerJson == null)
            throw new UserError($"'{ckpt}' has no tokenizer, so its tokens cannot be shown as text: sample from a checkpoint trained on text");
        var tok = Tokenizers.FromJson(loaded.TokenizerJson);
        var model = loaded.Model;
        int V = model.Config.DVocab;
        string prompt = o.Get(Prompt);
        var ids = new List<int>(tok.Encode(prompt, "--prompt"));
        if (ids.Count == 0) throw new UsageError("--prompt is empty: give at least one character");
        int promptTokens = ids.Count;
        var shown = new System.Text.StringBuilder(); // the generated text printed so far

        stdout.Write(prompt);
        var probs = new float[V];
        var order = new int[V];
        // the next-token logits of the last min(tokens so far, n_ctx) tokens (see Generator), cached or not
        var gen = new Generator(model, cached, slide);
        var logits = n > 0 ? gen.Prefill(CollectionsMarshal.AsSpan(ids)) : default;
        for (int i = 0; i < n; i++)
        {
            int next = Pick(logits, temperature, topK, ref rng, probs, order);
            ids.Add(next);
            if (i + 1 < n) logits = gen.Append(next);
            // a byte-level token may end inside a character: print only what decodes whole so far
            string text = Generated(tok, ids, promptTokens, final: i == n - 1);
            if (text.Length > shown.Length && text.StartsWith(shown.ToString(), StringComparison.Ordinal))
            {
                stdout.Write(text[shown.Length..]);
                shown.Clear().Append(text);
                stdout.Flush();
            }
        }
        stdout.WriteLine();
        return 0;
    }

    /// <summary>
    /// The text of the generated ids (after the prompt's): ids past the tokenizer (padding rows of
    /// d_vocab) as U+FFFD; unless final, without a trailing U+FFFD that may be a character still arriving.
    /// </summary>
    private static string Generated(ITokenizer tok, List<int> ids, int from, bool final)
    {
        var gen = new int[ids.Count - from];
        var sb = new System.Text.StringBuilder();
        int run = 0;
        for (int i = 0; i < gen.Length; i++)
        {
            int id = ids[from + i];
            if (id < tok.VocabSize) { gen[run++] = id; continue; }
            sb.Append(tok.Decode(gen.AsSpan(0, run))).Append('\uFFFD');
            run = 0;
        }
        sb.Append(tok.Decode(gen.AsSpan(0, run)));
        if (!final) while (sb.Length > 0 && sb[^1] == '\uFFFD') sb.Length--;
        return sb.ToString();
    }

    /// <summary>Greedy at temperature 0; otherwise softmax(logits / T) restricted to the top k, sampled by inverse CDF.</summary>
    public static int Pick(ReadOnlySpan<float> logits, float temperature, int topK, ref Rng rng, float[] probs, int[] order)
    {
        int V = logits.Length;
        if (temperature == 0) return TensorPrimitives.IndexOfMax(logits);
        for (int i = 0; i < V; i++) { probs[i] = logits[i] / temperature; order[i] = i; }
        if (topK > 0 && topK < V)
        {
            Array.Sort(probs.AsSpan(0, V).ToArray(), order); // order sorted by ascending logit
            float cutoff = logits[order[V - topK]] / temperature;
            for (int i = 0; i < V; i++) if (probs[i] < cutoff) probs[i] = float.NegativeInfinity;
        }
        MiniGpt.Layers.Softmax.Forward(probs.AsSpan(0, V), probs.AsSpan(0, V));
        double u = rng.NextDouble(), acc = 0;
        for (int i = 0; i < V; i++)
        {
            acc += probs[i];
            if (u < acc) return i;
        }
        return TensorPrimitives.IndexOfMax(probs.AsSpan(0, V));
    }
}
