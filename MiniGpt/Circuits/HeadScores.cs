using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// The behavioural scores of every attention head, [layer][head] per score, measured on repeated random
/// sequences (<see cref="HeadProbe"/>) for every score of a <see cref="HeadScoreSet"/> (the definitions
/// are in MiniGpt/Circuits/Scores), and each head's label from the set's labeler. The attention scores are
/// attention masses on a target key averaged over the queries that have such a target (1 = all attention
/// on the target). On the default trained model (README) this labels L0H0 and L0H1 current-token suppression
/// (0.90, 0.94), L0H2 and L0H3 previous-token suppression (previous-token 0.64, 0.47; their OV eigenvalue score is
/// −1.00 like L0H0's and L0H1's) and all four layer-1 heads induction (0.88–0.97).
/// A log entry read back (CircuitsLog) holds only the scores its line has: <see cref="Has"/> says which.
/// </summary>
public sealed class HeadScores
{
    public HeadScores(int layers, int heads, HeadScoreSet set, IReadOnlyDictionary<string, double[][]> grids, string[][] labels)
    {
        Layers = layers; Heads = heads; Set = set; Grids = grids; Labels = labels;
    }

    public int Layers { get; }
    public int Heads { get; }
    /// <summary>The registry the scores were computed with (or read with), which orders them.</summary>
    public HeadScoreSet Set { get; }
    /// <summary>Score name → [layer][head].</summary>
    public IReadOnlyDictionary<string, double[][]> Grids { get; }
    /// <summary>[layer][head]: the strongest role, or "".</summary>
    public string[][] Labels { get; }

    /// <summary>The grid of a score; an error naming it when this entry lacks it.</summary>
    public double[][] this[string name] => Grids.TryGetValue(name, out var g) ? g : throw new KeyNotFoundException($"no '{name}' score here");

    public bool Has(string name) => Grids.ContainsKey(name);

    /// <summary>A head's value of one score, NaN when absent.</summary>
    public double Value(string name, int layer, int head) =>
        Grids.TryGetValue(name, out var g) && layer < g.Length && head < g[layer].Length ? g[layer][head] : double.NaN;

    /// <summary>A head's roles, strongest first (the set's labeler).</summary>
    public string[] Roles(int layer, int head) => Set.Roles(name => Value(name, layer, head));

    /// <summary>
    /// Sequences in the circuits run's score probe: about 512 tokens, 8 to 16 of them (16 at n_ctx 32, 8 from n_ctx 64 on,
    /// where a sequence is 2·min(n_ctx/2, <see cref="HeadProbe.MaxHalf"/>) tokens).
    /// </summary>
    public static int DefaultBatchFor(int nCtx) => Math.Clamp(512 / Math.Min(nCtx, 2 * HeadProbe.MaxHalf), 8, 16);

    /// <summary>
    /// Runs <paramref name="batch"/> repeated random sequences of 2·seqLen tokens (seqLen 0: n_ctx/2 rounded
    /// down, at most <see cref="HeadProbe.MaxHalf"/>) through the model once, caching the hook points the scores need, and computes every score of
    /// <paramref name="scores"/> (null: <see cref="HeadScoreSet.Default"/>) for every head.
    /// </summary>
    /// <param name="circuits">the weight circuits of the model (LayerNormFolding.ForCircuits), when the caller has made them; the suppression scores read their OV eigenvalues.</param>
    public static HeadScores Compute(GptModel model, int batch = 16, int seqLen = 0, ulong seed = 1, HeadScoreSet? scores = null, WeightCircuits? circuits = null)
    {
        scores ??= HeadScoreSet.Default;
        var c = model.Config;
        int L = seqLen == 0 ? HeadProbe.HalfFor(c.NCtx) : seqLen;
        if (batch < 1) throw new ArgumentException($"batch must be ≥ 1, got {batch}");
        if (L < 2 || 2 * L > c.NCtx)
            throw new ArgumentException($"seqLen {L} must be in [2, n_ctx/2 = {c.NCtx / 2}] so that the repeated sequence fits n_ctx={c.NCtx}");
        int nL = c.NLayers, H = c.NHeads;
        var grids = new Dictionary<string, double[][]>(StringComparer.Ordinal);
        var labels = new string[nL][];
        for (int l = 0; l < nL; l++) labels[l] = new string[H];
        if (nL == 0)
        {
            foreach (var s in scores) grids[s.Name] = [];
            return new HeadScores(0, H, scores, grids, labels);
        }
        var probe = HeadProbe.Run(model, scores.Hooks, batch, L, seed, circuits);
        foreach (var s in scores)
        {
            var g = s.Compute(probe);
            if (g.Length != nL || g.Any(row => row.Length != H))
                throw new InvalidOperationException($"score {s.Name} returned a grid that is not [{nL} layers][{H} heads]");
            grids[s.Name] = g;
        }
        var result = new HeadScores(nL, H, scores, grids, labels);
        for (int l = 0; l < nL; l++)
            for (int h = 0; h < H; h++) labels[l][h] = scores.Label(name => result.Value(name, l, h));
        return result;
    }
}
