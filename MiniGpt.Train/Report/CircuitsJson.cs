using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt.Circuits;

namespace MiniGpt.Train.Report;

/// <summary>
/// circuits.json: every number of a <see cref="CircuitsResult"/>. Names follow the report (snake_case);
/// scores are [0, 1] attention or logit shares except the eigenvalue scores in [−1, 1]; losses are in
/// nats; eigenvalues are [re, im] pairs; non-finite numbers are written as null (JSON has no NaN).
/// Composition scores are listed per pair of heads (writer in an earlier layer, reader in a later one).
/// </summary>
public static class CircuitsJson
{
    public static JsonObject Build(CircuitsResult r, IReadOnlyList<PlotImage> plots)
    {
        var c = r.Config;
        var o = new JsonObject
        {
            ["checkpoint"] = r.Checkpoint,
            ["config"] = JsonNode.Parse(c.ToJson()),
            ["parameters"] = r.Parameters,
            ["tokenizer"] = r.Text.TokenizerName,
            ["layer_norm_folded"] = r.LayerNormFolded,
            ["notes"] = Arr(r.Notes.Select(n => (JsonNode?)n)),
            ["data"] = new JsonObject { ["description"] = r.Data.Description, ["batches"] = r.Data.Batches.Count, ["tokens"] = r.Data.Tokens },
            ["thresholds"] = new JsonObject(r.ScoreSet.RoleScores.Select(s => KeyValuePair.Create(s.Name, (JsonNode?)s.Role!.Threshold))),
            // what each key of a head's entry means, in the order the entries list them
            ["scores"] = Arr(r.ScoreSet.Select(s => (JsonNode?)new JsonObject
            {
                ["name"] = s.Name, ["header"] = s.Header, ["description"] = s.Description, ["role"] = s.Role?.Name, ["threshold"] = s.Role?.Threshold,
            })),
        };

        if (r.Clean is { } clean && r.HeadlineHead is { } hh)
        {
            var headline = new JsonObject { ["text"] = r.Headline };
            foreach (var s in r.ScoreSet.RoleScores) headline[$"{s.Name}_heads"] = Arr(r.WithRole(s).Select(h => (JsonNode?)h.Name));
            headline["ablated_head"] = hh.Name;
            headline["clean_repeat_loss"] = N(clean.Repeat);
            headline["ablated_repeat_loss"] = N(hh.Ablation.Losses.Repeat);
            headline["repeat_loss_factor"] = N(hh.Ablation.RepeatFactor);
            headline["mean_ablated_repeat_loss_factor"] = N(hh.Ablation.MeanRepeatFactor);
            // the heads and the role groups by the size of their zero-ablation effect, largest first (what the headline leads with)
            headline["heads_by_effect"] = Arr(r.HeadsByEffect.Select(h => (JsonNode?)h.Name));
            headline["groups_by_effect"] = Arr(r.GroupsByEffect.Select(g => (JsonNode?)g.Role));
            headline["induction_head"] = r.InductionHead?.Name;
            headline["all_induction_heads_repeat_loss_factor"] =
                r.Groups.Where(g => g.Roles.Contains(InductionScore.RoleName)).Select(g => N(g.Zero.Repeat / clean.Repeat)).FirstOrDefault();
            o["headline"] = headline;
        }

        o["heads"] = Arr(r.Heads.Select(h => (JsonNode?)Head(h, r.ScoreSet)));
        // the heads the summary table lists (all of them up to NotableHeads.AllUpTo; else those with a role and each score's top 3)
        o["shown_heads"] = Arr(r.ShownHeads.Select(h => (JsonNode?)h.Name));
        if (r.Clean is { } cl)
            o["ablation"] = new JsonObject
            {
                ["method"] = "zero the head's slice of blocks.{l}.attn.hook_z",
                ["mean_method"] = "set the head's slice of blocks.{l}.attn.hook_z to its mean over the batch and positions of the same sequences run clean (the probe's on the probe, the data's on the data)",
                ["probe"] = $"{HeadAblation.ProbeBatchFor(c.NCtx)} repeated random sequences of {HeadProbe.HalfFor(c.NCtx)}+{HeadProbe.HalfFor(c.NCtx)} tokens; repeat loss = mean loss of predicting tokens L+1 … 2L−1",
                ["clean"] = Losses(cl),
                ["groups"] = Arr(r.Groups.Select(g => (JsonNode?)new JsonObject
                {
                    ["role"] = g.Role, ["roles"] = Arr(g.Roles.Select(x => (JsonNode?)x)), ["heads"] = Arr(g.Heads.Select(x => (JsonNode?)x)), ["losses"] = Losses(g.Zero),
                    ["repeat_factor"] = N(g.Zero.Repeat / cl.Repeat), ["data_factor"] = N(g.Zero.Data / cl.Data),
                    ["mean_losses"] = g.Mean is { } m ? Losses(m) : null,
                    ["mean_repeat_factor"] = g.Mean is { } m2 ? N(m2.Repeat / cl.Repeat) : null, ["mean_data_factor"] = g.Mean is { } m3 ? N(m3.Data / cl.Data) : null,
                })),
            };

        if (r.Composition is { } comp)
        {
            var pairs = new JsonArray();
            var kinds = new[] { CompositionKind.Q, CompositionKind.K, CompositionKind.V };
            for (int l1 = 0; l1 < comp.NLayers; l1++)
                for (int h1 = 0; h1 < comp.NHeads; h1++)
                    for (int l2 = l1 + 1; l2 < comp.NLayers; l2++)
                        for (int h2 = 0; h2 < comp.NHeads; h2++)
                        {
                            var p = new JsonObject { ["writer"] = $"L{l1}H{h1}", ["reader"] = $"L{l2}H{h2}" };
                            foreach (var k in kinds)
                            {
                                string n = k.ToString().ToLowerInvariant();
                                p[$"{n}_raw"] = N(comp.Raw(k, l1, h1, l2, h2));
                                p[$"{n}_minus_baseline"] = N(comp.BaselineSubtracted(k, l1, h1, l2, h2));
                            }
                            pairs.Add(p);
                        }
            o["composition"] = new JsonObject
            {
                ["baseline"] = new JsonObject { ["q"] = N(comp.Baseline(CompositionKind.Q)), ["k"] = N(comp.Baseline(CompositionKind.K)), ["v"] = N(comp.Baseline(CompositionKind.V)), ["samples"] = comp.BaselineSamples },
                ["pairs"] = pairs,
            };
        }

        o["loss_by_position"] = Nums(r.LossByPosition);
        o["icl_score"] = new JsonObject { ["early_position"] = r.IclEarly, ["late_position"] = r.IclLate, ["score"] = N(r.IclScore), ["note"] = r.IclNote };
        if (r.SkipTrigrams is { } st)
            o["skip_trigrams"] = Arr(st.Select(x => (JsonNode?)new JsonObject
            {
                ["head"] = $"L0H{x.Head}",
                ["top"] = Arr(x.Top.Select(t => (JsonNode?)new JsonObject
                {
                    ["source"] = t.Source, ["destination"] = t.Destination, ["output"] = t.Output,
                    ["text"] = $"{r.Text.Show(t.Source)} … {r.Text.Show(t.Destination)} → {r.Text.Show(t.Output)}", ["score"] = N(t.Score),
                })),
            }));
        if (r.BigramKl is double kl) o["bigram_kl"] = N(kl);
        if (r.PathImportance is var (names, imp))
            o["path_expansion"] = Arr(names.Select((n, i) => (JsonNode?)new JsonObject { ["term"] = n, ["importance"] = N(imp[i]) }));
        o["coding_rate"] = new JsonObject { ["eps"] = r.CodingEps, ["after_embedding_then_each_layer"] = Nums(r.CodingRates) };
        var cs = r.Cosines;
        o["embedding_cosines"] = new JsonObject
        {
            ["mean"] = N(cs.Mean), ["std"] = N(cs.Std), ["expected_std"] = N(cs.ExpectedStd),
            ["hist_min"] = N(cs.HistMin), ["hist_max"] = N(cs.HistMax), ["histogram"] = Nums(cs.Histogram),
        };
        if (r.Attention is { } a)
            o["attention_example"] = new JsonObject
            {
                ["tokens"] = Arr(a.Tokens.Select(t => (JsonNode?)t)),
                ["text"] = Arr(a.Tokens.Select(t => (JsonNode?)r.Text.Show(t))),
                ["heads"] = Arr(a.Heads.Select(h => (JsonNode?)$"L{h.Layer}H{h.Head}")),
            };
        if (r.Training is { } tr)
            o["training_log"] = new JsonObject { ["path"] = r.TrainingLogPath, ["evaluations"] = tr.Count, ["first_step"] = tr[0].Step, ["last_step"] = tr[^1].Step };
        o["plots"] = Arr(plots.Select(p => (JsonNode?)p.FileName));
        o["seconds"] = Math.Round(r.Seconds, 3);
        return o;
    }

    public static string ToJson(JsonObject o) => o.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    private static JsonObject Head(HeadReport h, HeadScoreSet scores)
    {
        var spectra = new JsonObject();
        foreach (var s in h.Spectra)
            spectra[s.Name] = new JsonObject
            {
                ["shape"] = new JsonArray(s.Rows, s.Cols),
                ["singular_values"] = Nums(s.SingularValues),
                ["eigenvalues"] = Arr(s.Eigenvalues.Select(e => (JsonNode?)Pair(e))),
                ["eigenvalue_score"] = N(s.EigenvalueScore),
            };
        var o = new JsonObject { ["name"] = h.Name, ["layer"] = h.Layer, ["head"] = h.Head, ["roles"] = Arr(h.Roles.Select(x => (JsonNode?)x)) };
        foreach (var s in scores) o[s.Name] = N(h.Score(s.Name));
        o["ov_eigenvalue_copying"] = N(h.OvCopying);
        o["qk_eigenvalue_score"] = N(h.QkEigenScore);
        o["ablation"] = !h.Ablation.Measured ? null : new JsonObject // null: not ablated (a wide model ablates its notable heads, --ablate)
        {
            ["losses"] = Losses(h.Ablation.Losses),
            ["repeat_factor"] = N(h.Ablation.RepeatFactor), ["data_factor"] = N(h.Ablation.DataFactor),
            ["data_repeat_factor"] = h.Ablation.DataRepeatFactor is double f ? N(f) : null,
        };
        o["mean_ablation"] = !h.Ablation.MeanMeasured ? null : new JsonObject
        {
            ["losses"] = Losses(h.Ablation.MeanLosses!),
            ["repeat_factor"] = N(h.Ablation.MeanRepeatFactor), ["data_factor"] = N(h.Ablation.MeanDataFactor),
            ["data_repeat_factor"] = h.Ablation.MeanDataRepeatFactor is double mf ? N(mf) : null,
        };
        o["spectra"] = spectra;
        return o;
    }

    private static JsonObject Losses(AblationLosses l) => new()
    {
        ["repeat_half"] = N(l.Repeat), ["data"] = N(l.Data), ["data_predictable"] = l.DataRepeat is double d ? N(d) : null,
    };

    private static JsonArray Pair(Complex c) => new(N(c.Real), N(c.Imaginary));
    /// <summary>A number for the reports' JSON: non-finite values (an undefined normalisation, 0/0) are null.</summary>
    internal static JsonNode? N(double x) => double.IsFinite(x) ? JsonValue.Create(x) : null;
    private static JsonArray Nums(IEnumerable<double> xs) => Arr(xs.Select(N));
    private static JsonArray Arr(IEnumerable<JsonNode?> xs) => new(xs.ToArray());
}
