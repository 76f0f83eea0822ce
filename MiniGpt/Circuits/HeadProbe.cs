using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// The run every head score reads: B repeated random sequences (L random tokens, then the same L again;
/// 2L ≤ n_ctx), the probe TransformerLens's induction tutorials and head detector use
/// (transformer_lens/head_detector.py; "Finding induction heads" in the TransformerLens main demo / ARENA
/// 1.2), through one RunWithCache that keeps the hook points the registered scores need. MiniGpt has no
/// BOS token, so nothing is excluded for one. Forward hooks already registered on the model stay active
/// (so a test can force a pattern).
/// </summary>
public sealed class HeadProbe
{
    private readonly ActivationCache _cache;
    private WeightCircuits? _circuits;
    private double[][]? _ov;

    /// <summary>
    /// The longest random half the probes use: L = min(n_ctx/2, 128). Induction is read the same at 128 as at 512
    /// (TransformerLens's GPT-2 demos use 50), while a 1,024-context model's probe at n_ctx/2 would hold
    /// B·H·1,024² attention floats per layer: 400 MB a layer, 4.8 GB over GPT-2 small's 12, for 8 sequences.
    /// </summary>
    public const int MaxHalf = 128;

    /// <summary>L of the probes for a model of this context: n_ctx/2, at most <see cref="MaxHalf"/>.</summary>
    public static int HalfFor(int nCtx) => Math.Min(nCtx / 2, MaxHalf);

    private HeadProbe(GptModel model, int batch, int half, int[] tokens, ActivationCache cache, WeightCircuits? circuits)
    {
        Model = model; Batch = batch; Half = half; Tokens = tokens; _cache = cache; _circuits = circuits;
    }

    public GptModel Model { get; }
    public ModelConfig Config => Model.Config;
    /// <summary>B, the number of sequences.</summary>
    public int Batch { get; }
    /// <summary>L, the length of the random half.</summary>
    public int Half { get; }
    /// <summary>T = 2L, the length of a sequence.</summary>
    public int SeqLen => 2 * Half;
    /// <summary>The sequences [B, 2L], row-major.</summary>
    public int[] Tokens { get; }

    /// <summary>blocks.{layer}.{hook} of the run, e.g. Activation(1, "attn.hook_v") [B, T, H, d_head].</summary>
    public ReadOnlySpan<float> Activation(int layer, string hook) => _cache[$"blocks.{layer}.{hook}"].Span;

    /// <summary>blocks.{layer}.attn.hook_pattern [B, H, T, T]: A[b, h, query, key].</summary>
    public ReadOnlySpan<float> Pattern(int layer) => Activation(layer, "attn.hook_pattern");

    /// <summary>
    /// The eigenvalue score Re(Σλ)/Σ|λ| of head (layer, head)'s OV circuit W_E·W_V·W_O·W_U (+1: copies the token it
    /// attends to, −1: suppresses it), on the model the weight circuits read (<see cref="LayerNormFolding.ForCircuits"/>:
    /// LayerNorm folded, unembedding centred), the report's OV-eig column. Made for every head on first use, from the
    /// WeightCircuits the run was given (the circuits verb's own) or else from a folded copy of the model.
    /// </summary>
    public double OvEigenvalueScore(int layer, int head)
    {
        if (_ov == null)
        {
            var wc = _circuits ?? new WeightCircuits(LayerNormFolding.ForCircuits(Model).Model);
            _ov = PerHead(wc.OvEigenvalueScore);
            _circuits = null; // the grid is all a probe keeps
        }
        return _ov[layer][head];
    }

    /// <summary>A [layer][head] grid of score(layer, head).</summary>
    public double[][] PerHead(Func<int, int, double> score)
    {
        var g = new double[Config.NLayers][];
        for (int l = 0; l < g.Length; l++)
        {
            g[l] = new double[Config.NHeads];
            for (int h = 0; h < g[l].Length; h++) g[l][h] = score(l, h);
        }
        return g;
    }

    /// <summary>Runs the sequences with a cache of every hook point in <paramref name="hooks"/> (names without "blocks.{l}.").</summary>
    /// <param name="circuits">the model's weight circuits when the caller has them (<see cref="OvEigenvalueScore"/> reads them); null: made when needed.</param>
    public static HeadProbe Run(GptModel model, IReadOnlyCollection<string> hooks, int batch, int half, ulong seed, WeightCircuits? circuits = null)
    {
        var tokens = RepeatedRandomTokens(model.Config.DVocab, batch, half, seed);
        var suffixes = hooks.Select(h => "." + h).ToArray();
        var cache = model.RunWithCache(tokens, batch, 2 * half, n => suffixes.Any(s => n.EndsWith(s, StringComparison.Ordinal)));
        return new HeadProbe(model, batch, half, tokens, cache, circuits);
    }

    /// <summary>
    /// B sequences [B, 2L]: L uniform random tokens (distinct, by a partial Fisher–Yates shuffle, when
    /// vocab ≥ L, so the second half is the only repetition; with replacement otherwise), then the same L again.
    /// </summary>
    public static int[] RepeatedRandomTokens(int vocab, int batch, int half, ulong seed)
    {
        var rng = new Rng(seed);
        int L = half, T = 2 * L;
        var tokens = new int[batch * T];
        var perm = vocab >= L ? Enumerable.Range(0, vocab).ToArray() : null;
        for (int b = 0; b < batch; b++)
        {
            var row = tokens.AsSpan(b * T, T);
            for (int i = 0; i < L; i++)
            {
                if (perm != null)
                {
                    int j = i + rng.NextInt(vocab - i);
                    (perm[i], perm[j]) = (perm[j], perm[i]);
                    row[i] = perm[i];
                }
                else row[i] = rng.NextInt(vocab);
            }
            row[..L].CopyTo(row[L..]);
        }
        return tokens;
    }
}
