using System.Diagnostics;
using MiniGpt.Data;
using MiniGpt.Checkpoints;
using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>One head's line of the report: its detected roles, behavioural scores, circuit spectra and ablation.</summary>
public sealed record HeadReport(int Layer, int Head, string[] Roles, double PreviousToken, double DuplicateToken, double Induction,
    double PrefixMatching, double Copying, IReadOnlyList<CircuitSpectrum> Spectra, HeadAblationResult Ablation)
{
    public string Name => $"L{Layer}H{Head}";
    public CircuitSpectrum Spectrum(string name) => Spectra.First(s => s.Name == name);
    /// <summary>Eigenvalue copying score of the OV circuit W_E·W_V·W_O·W_U (Elhage et al. 2021).</summary>
    public double OvCopying => Spectrum("ov").EigenvalueScore;
    /// <summary>Eigenvalue score of the token QK circuit W_E·W_Q·W_Kᵀ·W_Eᵀ (positive: tokens attend to themselves).</summary>
    public double QkEigenScore => Spectrum("token_qk").EigenvalueScore;
}

/// <summary>One repeated random sequence and the attention pattern [T, T] of each chosen head on it.</summary>
public sealed record AttentionExample(int[] Tokens, int Half, List<(int Layer, int Head, float[] Pattern)> Heads);

/// <summary>Everything the circuits verb measures; CircuitsJson writes it, HtmlReport shows it.</summary>
public sealed class CircuitsResult
{
    public required string Checkpoint { get; init; }
    public required ModelConfig Config { get; init; }
    public required long Parameters { get; init; }
    public required TokenText Text { get; init; }
    public required bool LayerNormFolded { get; init; }
    public required List<string> Notes { get; init; }
    public required EvalSet Data { get; init; }
    public HeadScores? Scores { get; init; }
    public required List<HeadReport> Heads { get; init; }
    public CompositionScores? Composition { get; init; }
    public required double[] LossByPosition { get; init; }
    public required int IclEarly { get; init; }
    public required int IclLate { get; init; }
    public required double IclScore { get; init; }
    public AblationLosses? Clean { get; init; }
    /// <summary>Every head of one detected role ablated at once (roles with at least two heads), since redundant heads cover for each other.</summary>
    public required List<(string Role, string[] Heads, AblationLosses Losses)> GroupAblations { get; init; }
    /// <summary>The head whose ablation is the headline: the strongest induction head.</summary>
    public HeadReport? HeadlineHead { get; init; }
    public List<(int Head, List<SkipTrigram> Top)>? SkipTrigrams { get; init; }
    public double? BigramKl { get; init; }
    public (string[] Names, double[] Importance)? PathImportance { get; init; }
    public required double[] CodingRates { get; init; }
    public required double CodingEps { get; init; }
    public required CosineStats Cosines { get; init; }
    public string? TrainingLogPath { get; init; }
    public List<CircuitsLogEntry>? Training { get; init; }
    public AttentionExample? Attention { get; init; }
    public double Seconds { get; set; }

    public IEnumerable<HeadReport> WithRole(string role) => Heads.Where(h => h.Roles.Contains(role)).OrderByDescending(h => Score(h, role));

    public static double Score(HeadReport h, string role) => role switch
    {
        "previous-token" => h.PreviousToken,
        "duplicate-token" => h.DuplicateToken,
        "induction" => h.Induction,
        _ => double.NaN,
    };

    /// <summary>"ablating the induction head L1H2 raises the repeated-half loss 12.3× (0.181 → 2.23 nats)", or null without heads.</summary>
    public string? Headline
    {
        get
        {
            if (HeadlineHead is not { } h || Clean is null) return null;
            string what = h.Roles.Contains("induction") ? "the induction head" : "the head with the highest induction score (below the 0.4 threshold),";
            string line = $"ablating {what} {h.Name} raises the repeated-half loss {h.Ablation.RepeatFactor:0.0}× ({Clean.Repeat:0.000} → {h.Ablation.Losses.Repeat:0.000} nats)";
            foreach (var (role, names, losses) in GroupAblations.Where(g => g.Role == "induction"))
                line += $"; all {names.Length} induction heads together {losses.Repeat / Clean.Repeat:0.0}× ({losses.Repeat:0.000} nats)";
            return line;
        }
    }
}

/// <summary>
/// Runs every analysis of MiniGpt/Circuits on a checkpoint. Behaviour (head scores, ablations, loss by
/// position, coding rates, attention patterns) is measured on the model as it is; the weight circuits
/// (spectra, copying, composition, skip-trigrams) on the LayerNorm-folded model when it has LayerNorm
/// (LayerNormFolding.FoldLayerNorm, as TransformerLens's fold_ln before circuit analysis), so that the
/// weights read the normalised residual stream directly.
/// </summary>
public static class CircuitsAnalysis
{
    /// <summary>Half-length of the repeated sequence drawn in the attention plots: long enough to see the stripes, short enough to read the tokens.</summary>
    public const int ShownHalf = 20;

    public static CircuitsResult Run(string checkpoint, Checkpoint.Loaded loaded, EvalSet data, TokenText text,
        IReadOnlyList<(int Layer, int Head)>? chosenHeads, Action<string>? stage = null)
    {
        var clock = Stopwatch.StartNew();
        var model = loaded.Model;
        var c = model.Config;
        var notes = new List<string>();

        // the model the weight circuits are read from
        stage?.Invoke("folding LayerNorm");
        GptModel circuitsModel = model;
        bool folded = false;
        if (c.HasLayerNorm)
        {
            if (c.Shortformer)
                notes.Add("LayerNorm was not folded (shortformer positions are added after ln1, so ln1's gain cannot be folded into W_Q and W_K): the weight circuits ignore LayerNorm");
            else
            {
                circuitsModel = LayerNormFolding.FoldLayerNorm(model);
                folded = true;
                notes.Add("the model has LayerNorm: weight circuits (eigenvalues, OV copying, composition, skip-trigrams) are computed on the LayerNorm-folded model " +
                    "(LN gains and biases folded into the weights that read them, writing weights and the unembedding centred, as TransformerLens's fold_ln)");
            }
        }

        // about 512 tokens of repeated sequences (16 at n_ctx 32, HeadScores' default; 8 at n_ctx ≥ 64): the copying score's
        // per-position unembedding makes this the costliest score for wide vocabularies
        stage?.Invoke("head scores");
        HeadScores? scores = c.NLayers > 0 ? HeadScores.Compute(model, batch: Math.Clamp(512 / c.NCtx, 8, 16)) : null;
        stage?.Invoke("head ablations");
        var (clean, ablations) = c.NLayers > 0 ? HeadAblation.Run(model, data) : (null, new List<HeadAblationResult>());
        var heads = new List<HeadReport>();
        WeightCircuits? wc = c.NLayers > 0 ? new WeightCircuits(circuitsModel) : null;
        for (int l = 0; l < c.NLayers; l++)
            for (int h = 0; h < c.NHeads; h++)
            {
                var s = scores!;
                heads.Add(new HeadReport(l, h, Roles(s.PreviousToken[l][h], s.DuplicateToken[l][h], s.Induction[l][h]),
                    s.PreviousToken[l][h], s.DuplicateToken[l][h], s.Induction[l][h], s.PrefixMatching[l][h], s.Copying[l][h],
                    wc!.HeadSpectra(l, h), ablations[l * c.NHeads + h]));
            }
        var groups = new List<(string, string[], AblationLosses)>();
        foreach (var role in new[] { "previous-token", "duplicate-token", "induction" })
        {
            var members = heads.Where(h => h.Roles.Contains(role)).ToList();
            if (members.Count >= 2)
                groups.Add((role, members.Select(h => h.Name).ToArray(), HeadAblation.Measure(model, data, members.Select(h => (h.Layer, h.Head)).ToList())));
        }
        stage?.Invoke("composition");
        var composition = c.NLayers >= 2 ? MiniGpt.Circuits.Composition.Compute(wc!) : null;

        // the in-context learning curve over the data; Olsson et al. use tokens 50 and 500 of 512, i.e. about
        // a tenth of the way in and the end: scaled to this context
        int T = c.NCtx;
        stage?.Invoke("in-context loss");
        var curve = InContext.LossByPosition(model, data.Batches);
        int early = Math.Max(1, T / 10), late = T - 1;
        double icl = InContext.IclScore(curve, early, late);

        HeadReport? headline = heads.Count == 0 ? null
            : heads.Where(h => h.Roles.Contains("induction")).OrderByDescending(h => h.Induction).FirstOrDefault()
              ?? heads.OrderByDescending(h => h.Induction).First();

        List<(int, List<SkipTrigram>)>? trigrams = null;
        if (c.NLayers == 1)
        {
            trigrams = Enumerable.Range(0, c.NHeads).Select(h => (h, SkipTrigrams.Top(circuitsModel, 0, h, 10))).ToList();
            if (c.HasMlp) notes.Add("skip-trigrams read each head through the embedding and unembedding only: this model's MLP is left out of them");
        }
        else notes.Add($"skip-trigrams are read from one-layer models; this one has {c.NLayers} layers");

        double? kl = null;
        if (c.NLayers == 0) kl = BigramKl.KlToBigrams(model, data.Corpus);

        stage?.Invoke("path expansion and geometry");
        // path expansion on the first data batch (up to 8 rows: it keeps 2 + 2H + H² logit tensors)
        var (x0, y0, _) = data.Batches[0];
        int rows = Math.Min(8, x0.Length / T);
        (string[], double[])? paths = null;
        if (c.HasLayerNorm)
            notes.Add("path expansion needs a model without LayerNorm (train --normalization none): LayerNorm divides by the norm of the whole residual stream, so the logits are not a sum of path terms, folded or not");
        else if (!c.AttnOnly)
            notes.Add("path expansion needs an attention-only model: an MLP is nonlinear");
        else if (c.NLayers is not (1 or 2))
            notes.Add($"path expansion is implemented for one- and two-layer models; this one has {c.NLayers}");
        else
        {
            var px = x0[..(rows * T)]; var py = y0[..(rows * T)];
            var terms = PathExpansion.Expand(model, px, rows, T);
            paths = (terms.Names, PathExpansion.TermImportance(model, px, py, rows, T));
        }

        const double eps = 0.5;
        var rates = Geometry.ResidualCodingRates(model, x0, x0.Length / T, T, eps);
        var cosines = Geometry.EmbeddingCosines(model);

        string logPath = CircuitsLog.PathFor(checkpoint);
        var training = File.Exists(logPath) ? CircuitsLog.Read(logPath) : null;
        if (training is { Count: 0 }) training = null;

        AttentionExample? attention = null;
        if (c.NLayers > 0)
        {
            var show = chosenHeads is { Count: > 0 } ? chosenHeads.ToList() : DefaultHeads(heads);
            attention = Patterns(model, text, show, data.Corpus);
        }

        return new CircuitsResult
        {
            Checkpoint = checkpoint, Config = c, Parameters = model.ParameterCount, Text = text, LayerNormFolded = folded, Notes = notes,
            Data = data, Scores = scores, Heads = heads, Composition = composition, LossByPosition = curve, IclEarly = early, IclLate = late,
            IclScore = icl, Clean = clean, GroupAblations = groups, HeadlineHead = headline, SkipTrigrams = trigrams, BigramKl = kl, PathImportance = paths,
            CodingRates = rates, CodingEps = eps, Cosines = cosines, TrainingLogPath = training != null ? logPath : null, Training = training,
            Attention = attention, Seconds = clock.Elapsed.TotalSeconds,
        };
    }

    /// <summary>Every role whose score reaches its threshold (HeadScores' thresholds), strongest first.</summary>
    public static string[] Roles(double prev, double dup, double ind) =>
        new[] { ("previous-token", prev, HeadScores.PreviousTokenThreshold), ("duplicate-token", dup, HeadScores.DuplicateTokenThreshold), ("induction", ind, HeadScores.InductionThreshold) }
            .Where(r => r.Item2 >= r.Item3).OrderByDescending(r => r.Item2).Select(r => r.Item1).ToArray();

    /// <summary>The strongest induction head and the strongest previous-token head (once if the same).</summary>
    public static List<(int Layer, int Head)> DefaultHeads(IReadOnlyList<HeadReport> heads)
    {
        var ind = heads.OrderByDescending(h => h.Induction).First();
        var prev = heads.OrderByDescending(h => h.PreviousToken).First();
        var list = new List<(int, int)> { (ind.Layer, ind.Head) };
        if (prev != ind) list.Add((prev.Layer, prev.Head));
        return list;
    }

    /// <summary>
    /// The patterns of the chosen heads on one repeated random sequence of tokens that have text: drawn
    /// from the tokens that occur in the data when it has enough of them (a byte-level vocabulary has
    /// stray bytes and control characters a reader would only stumble on), else from the whole vocabulary.
    /// </summary>
    public static AttentionExample Patterns(GptModel model, TokenText text, IReadOnlyList<(int Layer, int Head)> show, int[]? corpus = null)
    {
        var c = model.Config;
        int half = Math.Min(c.NCtx / 2, ShownHalf), T = 2 * half, H = c.NHeads;
        int decodable = text.Decodable(c.DVocab);
        int[] seen = text.HasTokenizer && corpus != null ? corpus.Where(t => t < decodable).Distinct().Order().ToArray() : [];
        var tokens = HeadScores.RepeatedRandomTokens(seen.Length >= half ? seen.Length : decodable, 1, half, seed: 3);
        if (seen.Length >= half) for (int i = 0; i < tokens.Length; i++) tokens[i] = seen[tokens[i]];
        var layers = show.Select(s => s.Layer).ToHashSet();
        var cache = model.RunWithCache(tokens, 1, T, n => layers.Any(l => n == $"blocks.{l}.attn.hook_pattern"));
        var result = new List<(int, int, float[])>();
        foreach (var (l, h) in show)
            result.Add((l, h, cache[$"blocks.{l}.attn.hook_pattern"].Span.Slice(h * T * T, T * T).ToArray()));
        return new AttentionExample(tokens, half, result);
    }
}
