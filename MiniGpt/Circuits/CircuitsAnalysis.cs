using System.Diagnostics;
using MiniGpt.Checkpoints;
using MiniGpt.Data;
using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>
/// Runs every analysis of MiniGpt/Circuits on a checkpoint. Behaviour (head scores, ablations, loss by
/// position, coding rates, attention patterns) is measured on the model as it is; the weight circuits
/// (spectra, copying, composition, skip-trigrams) on the LayerNorm-folded model when it has LayerNorm
/// (LayerNormFolding.FoldLayerNorm, as TransformerLens's fold_ln before circuit analysis), so that the
/// weights read the normalised residual stream directly, and with the unembedding centred over the vocabulary
/// for every model (LayerNormFolding.ForCircuits, as TL's center_unembed), folded or not.
/// </summary>
public static class CircuitsAnalysis
{
    /// <summary>Half-length of the repeated sequence drawn in the attention plots: long enough to see the stripes, short enough to read the tokens.</summary>
    public const int ShownHalf = 20;

    /// <param name="checkpoint">the checkpoint's path: named in the report, and where its --track-circuits log is looked for.</param>
    /// <param name="loaded">the checkpoint as <see cref="Checkpoint.Load"/> read it (the model and its tokenizer).</param>
    /// <param name="data">the evaluation windows (<see cref="EvalData.Open"/>).</param>
    public static CircuitsResult Run(string checkpoint, Checkpoint.Loaded loaded, EvalSet data, CircuitsOptions? options = null)
    {
        options ??= new CircuitsOptions();
        var clock = Stopwatch.StartNew();
        var stage = options.Stage;
        var set = options.Scores;
        var model = loaded.Model;
        var text = new TokenText(loaded.TokenizerJson != null ? Tokenizers.FromJson(loaded.TokenizerJson) : null);
        var c = model.Config;
        var notes = new List<string>();

        // the model the weight circuits are read from: LayerNorm folded when it can be, the unembedding centred always
        stage?.Invoke("folding LayerNorm");
        var (circuitsModel, folded) = LayerNormFolding.ForCircuits(model);
        if (c.HasLayerNorm && c.Shortformer)
            notes.Add("LayerNorm was not folded (shortformer positions are added after ln1, so ln1's gain cannot be folded into W_Q and W_K): the weight circuits ignore LayerNorm; the unembedding is centred");
        else if (folded)
            notes.Add("the model has LayerNorm: weight circuits (eigenvalues, OV copying, composition, skip-trigrams) are computed on the LayerNorm-folded model " +
                "(LN gains and biases folded into the weights that read them, writing weights and the unembedding centred, as TransformerLens's fold_ln)");
        WeightCircuits? wc = c.NLayers > 0 ? new WeightCircuits(circuitsModel) : null;

        // one activation buffer for every pass below (the probes and the data windows), made before the first of them
        if (c.NLayers > 0)
        {
            int probeT = 2 * HeadProbe.HalfFor(c.NCtx), probeB = Math.Max(HeadAblation.ProbeBatchFor(c.NCtx), HeadScores.DefaultBatchFor(c.NCtx));
            long capRows = (long)probeB * probeT, capPairs = capRows * probeT;
            foreach (var b in data.Batches) { capRows = Math.Max(capRows, b.Inputs.Length); capPairs = Math.Max(capPairs, (long)b.Inputs.Length * data.SeqLen); }
            model.EnsureCapacity((int)capRows, capPairs);
        }

        // 8 to 16 repeated sequences (HeadScores.DefaultBatchFor): the copying score's per-position unembedding makes this
        // the costliest score for wide vocabularies
        stage?.Invoke("head scores");
        HeadScores? scores = c.NLayers > 0 ? HeadScores.Compute(model, batch: HeadScores.DefaultBatchFor(c.NCtx), scores: set, circuits: wc) : null;
        stage?.Invoke("head ablations");
        int nHeads = c.NLayers * c.NHeads;
        IReadOnlyCollection<(int, int)>? ablated = options.AblateAll ? null
            : options.AblatedHeads ?? (NotableHeads.ShowsAll(nHeads) || scores == null ? null : NotableHeads.Of(scores));
        if (ablated != null && ablated.Count < nHeads)
            notes.Add(options.AblatedHeads != null
                ? $"{ablated.Count} of {nHeads} heads were ablated one at a time, as asked (--ablate); the others read –"
                : $"{ablated.Count} of the {nHeads} heads were ablated one at a time, the notable ones (those with a role, then each score's top {NotableHeads.TopPerScore}; at most {NotableHeads.Max}) " +
                  $"(two forward passes over the data per head, zero- and mean-ablated; --ablate all does every head); the others read –");
        // the heads' mean z on the clean model, once, for every mean-ablation below (none with --ablate none)
        var means = ablated is { Count: 0 } || c.NLayers == 0 ? null : HeadAblation.Means(model, data);
        var (clean, ablations) = c.NLayers > 0 ? HeadAblation.Run(model, data, ablated, means) : (null, new List<HeadAblationResult>());
        if (clean is { } cl && !(double.IsFinite(cl.Data) && double.IsFinite(cl.Repeat)))
            notes.Add($"the model's loss is not finite (data {cl.Data}, repeated half {cl.Repeat}): its weights are finite but overflow in the forward pass " +
                "(a diverged run's last checkpoint); every number that depends on a loss, and circuits whose products overflow, read NaN or –");
        var heads = new List<HeadReport>();
        for (int l = 0; l < c.NLayers; l++)
            for (int h = 0; h < c.NHeads; h++)
            {
                var values = set.ToDictionary(s => s.Name, s => scores!.Value(s.Name, l, h));
                heads.Add(new HeadReport(l, h, scores!.Roles(l, h), values, wc!.HeadSpectra(l, h), ablations[l * c.NHeads + h]));
            }
        var groups = new List<GroupAblation>();
        foreach (var score in set.RoleScores)
        {
            string role = score.Role!.Name;
            var members = heads.Where(h => h.Roles.Contains(role)).ToList();
            if (members.Count < 2 || means == null) continue; // --ablate none: no ablation at all
            var names = members.Select(h => h.Name).ToArray();
            int same = groups.FindIndex(g => g.Heads.SequenceEqual(names));
            if (same >= 0) // one ablation, both names
            {
                string[] roles = [.. groups[same].Roles, role];
                groups[same] = groups[same] with { Roles = roles, Role = string.Join(" / ", set.Specific(roles)) };
                continue;
            }
            var list = members.Select(h => (h.Layer, h.Head)).ToList();
            groups.Add(new GroupAblation(role, [role], names, HeadAblation.Measure(model, data, list), HeadAblation.Measure(model, data, list, means)));
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

        string? iclNote = null;
        if (InContext.Dip(curve, early, late) is int dip)
            notes.Add(iclNote = $"the loss-by-position curve is not monotone: it falls to its minimum near position {dip} ({curve[dip]:0.000} nats there) and rises again to " +
                $"{curve[late]:0.000} at position {late}, so the ICL score (late − early, {icl:+0.000;-0.000}) does not show how far the context brings the loss down");
        if (scores != null && scores.Has(InductionScore.Id) && scores.Has(PrefixMatchingScore.Id) && c.DVocab >= HeadProbe.HalfFor(c.NCtx)
            && heads.All(h => h.Score(InductionScore.Id) == h.Score(PrefixMatchingScore.Id)))
            notes.Add($"the ind and prefix columns are identical by construction: the probe's first half has {HeadProbe.HalfFor(c.NCtx)} distinct tokens (d_vocab {c.DVocab} ≥ L), " +
                "so a token's only earlier copy is L back and the token after it is the induction target i − L + 1");

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
        var training = File.Exists(logPath) ? CircuitsLog.Read(logPath, set) : null;
        if (training is { Count: 0 }) training = null;

        AttentionExample? attention = null;
        if (c.NLayers > 0)
        {
            var show = options.AttentionHeads is { Count: > 0 } chosen ? chosen.ToList() : DefaultHeads(heads);
            attention = Patterns(model, text, show, data.Corpus);
        }

        return new CircuitsResult
        {
            Checkpoint = checkpoint, Config = c, Parameters = model.ParameterCount, Text = text, LayerNormFolded = folded, Notes = notes,
            Data = data, ScoreSet = set, Scores = scores, Heads = heads, Composition = composition, LossByPosition = curve, IclEarly = early, IclLate = late,
            IclScore = icl, IclNote = iclNote, Clean = clean, Groups = groups, SkipTrigrams = trigrams, BigramKl = kl, PathImportance = paths,
            CodingRates = rates, CodingEps = eps, Cosines = cosines, TrainingLogPath = training != null ? logPath : null, Training = training,
            Attention = attention, Seconds = clock.Elapsed.TotalSeconds,
        };
    }

    /// <summary>The strongest induction head and the strongest previous-token head (once if the same).</summary>
    /// (The first head when the run has neither score.)
    public static List<(int Layer, int Head)> DefaultHeads(IReadOnlyList<HeadReport> heads)
    {
        var list = new List<(int, int)>();
        foreach (string id in new[] { InductionScore.Id, PreviousTokenScore.Id })
        {
            if (!heads[0].Scores.ContainsKey(id)) continue;
            var top = heads.OrderByDescending(h => h.Score(id)).First();
            if (!list.Contains((top.Layer, top.Head))) list.Add((top.Layer, top.Head));
        }
        if (list.Count == 0) list.Add((heads[0].Layer, heads[0].Head));
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
        var tokens = HeadProbe.RepeatedRandomTokens(seen.Length >= half ? seen.Length : decodable, 1, half, seed: 3);
        if (seen.Length >= half) for (int i = 0; i < tokens.Length; i++) tokens[i] = seen[tokens[i]];
        var layers = show.Select(s => s.Layer).ToHashSet();
        var cache = model.RunWithCache(tokens, 1, T, n => layers.Any(l => n == $"blocks.{l}.attn.hook_pattern"));
        var result = new List<(int, int, float[])>();
        foreach (var (l, h) in show)
            result.Add((l, h, cache[$"blocks.{l}.attn.hook_pattern"].Span.Slice(h * T * T, T * T).ToArray()));
        return new AttentionExample(tokens, half, result);
    }
}
