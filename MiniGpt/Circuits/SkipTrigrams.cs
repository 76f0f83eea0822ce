using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>"Source … Destination → Output": at Destination the head attends to an earlier Source and raises Output's logit.</summary>
public sealed record SkipTrigram(int Source, int Destination, int Output, float Score);

/// <summary>
/// Skip-trigrams of a one-layer attention-only model (Elhage et al. 2021, "A Mathematical Framework for
/// Transformer Circuits", section "One-Layer Attention-Only Transformers": the token QK circuit
/// W_E·W_Q·W_Kᵀ·W_Eᵀ decides which source token A a destination token B attends to, and the OV circuit
/// W_E·W_V·W_O·W_U which output tokens C that raises; "A … B → C").
///
/// Score, for destination B, source A, output C:
///   score(A, B, C) = P_B(A) · (OV[A, C] − mean_C' OV[A, C'])
///   P_B(A) = softmax over all A' of QK[B, A'] / √d_head,   QK[B, A] = (W_E[B]·W_Q[h])·(W_E[A]·W_K[h])ᵀ
///   OV[A, C] = W_E[A]·W_V[h]·W_O[h]·W_U[:, C]
/// i.e. the amount the head adds to C's logit (relative to the mean logit, as softmax ignores a shift) at
/// destination B, from source A, in a context holding each vocabulary token once. These are Elhage et al.'s
/// token circuits: biases, positional embeddings and LayerNorm are left out (for a LayerNorm model, fold it
/// first with LayerNormFolding so its gains are in the weights). For a layer above 0 the head is read
/// through the embedding only (its direct path), which is exact only for a one-layer model.
/// Memory: the QK and OV rows are computed one at a time (V floats each) from the d_head-wide
/// projections W_E·W_Q, W_E·W_K, W_E·W_V ([V, d_head] each) and only each OV row's top k outputs are kept
/// (V·k values), so no d_vocab × d_vocab matrix is formed.
/// </summary>
public static class SkipTrigrams
{
    /// <summary>The k skip-trigrams with the largest score (descending; ties by source, destination, output).</summary>
    public static List<SkipTrigram> Top(GptModel model, int layer, int head, int k)
    {
        var c = model.Config;
        if ((uint)layer >= (uint)c.NLayers) throw new ArgumentException($"layer {layer} is not in [0, {c.NLayers})");
        if ((uint)head >= (uint)c.NHeads) throw new ArgumentException($"head {head} is not in [0, {c.NHeads})");
        if (k < 1) return [];
        int V = c.DVocab, D = c.DModel, dh = c.DHead;
        var p = model.Params;
        string a = $"blocks.{layer}.attn.";
        var we = p["embed.W_E"].Span;
        var wu = p["unembed.W_U"].Span;
        var q = Project(we, p[a + "W_Q"].Span.Slice(head * D * dh, D * dh), V, D, dh);
        var kk = Project(we, p[a + "W_K"].Span.Slice(head * D * dh, D * dh), V, D, dh);
        var v = Project(we, p[a + "W_V"].Span.Slice(head * D * dh, D * dh), V, D, dh);
        var wo = p[a + "W_O"].Span.Slice(head * dh * D, dh * D);

        // each source's top outputs by centred OV logit, descending
        int topC = Math.Min(k, V);
        var ovTopIdx = new int[V][];
        var ovTopVal = new double[V][];
        var r = new double[D];
        var row = new double[V];
        var order = new int[V];
        for (int src = 0; src < V; src++)
        {
            Array.Clear(r);
            for (int e = 0; e < dh; e++)
            {
                double ve = v[src * dh + e];
                var w = wo.Slice(e * D, D);
                for (int d = 0; d < D; d++) r[d] += ve * w[d];
            }
            Array.Clear(row);
            for (int d = 0; d < D; d++)
            {
                double rd = r[d];
                var u = wu.Slice(d * V, V);
                for (int t = 0; t < V; t++) row[t] += rd * u[t];
            }
            double mean = 0;
            for (int t = 0; t < V; t++) mean += row[t];
            mean /= V;
            for (int t = 0; t < V; t++) { row[t] -= mean; order[t] = t; }
            var keys = (double[])row.Clone();
            for (int t = 0; t < V; t++) keys[t] = -keys[t];
            Array.Sort(keys, order); // ascending −value = descending value (stable enough: ties are broken below)
            ovTopIdx[src] = order[..topC];
            ovTopVal[src] = new double[topC];
            for (int i = 0; i < topC; i++) ovTopVal[src][i] = row[ovTopIdx[src][i]];
        }

        // a min-heap of the best k (score, then reverse index order so that the smaller triple wins a tie)
        var heap = new PriorityQueue<(int A, int B, int C, double S), (double, int, int, int)>();
        double scale = 1.0 / Math.Sqrt(dh);
        var prob = new double[V];
        for (int dst = 0; dst < V; dst++)
        {
            double max = double.NegativeInfinity;
            for (int src = 0; src < V; src++)
            {
                double s = 0;
                for (int e = 0; e < dh; e++) s += q[dst * dh + e] * kk[src * dh + e];
                prob[src] = s * scale;
                max = Math.Max(max, prob[src]);
            }
            double z = 0;
            for (int src = 0; src < V; src++) z += prob[src] = Math.Exp(prob[src] - max);
            for (int src = 0; src < V; src++)
            {
                double pa = prob[src] / z;
                for (int i = 0; i < topC; i++)
                {
                    double s = pa * ovTopVal[src][i];
                    var item = (src, dst, ovTopIdx[src][i], s);
                    var pri = (s, -src, -dst, -ovTopIdx[src][i]);
                    if (heap.Count < k) heap.Enqueue(item, pri);
                    else if (heap.TryPeek(out _, out var worst) && Compare(pri, worst) > 0) heap.EnqueueDequeue(item, pri);
                    else break; // the row is sorted by value, so later outputs of this source score no more
                }
            }
        }
        var result = new List<SkipTrigram>(heap.Count);
        while (heap.TryDequeue(out var t, out _)) result.Add(new SkipTrigram(t.A, t.B, t.C, (float)t.S));
        result.Reverse();
        return result;
    }

    private static int Compare((double, int, int, int) x, (double, int, int, int) y) => Comparer<(double, int, int, int)>.Default.Compare(x, y);

    // W_E [V, D]·W [D, dh] → [V, dh] in double
    private static double[] Project(ReadOnlySpan<float> we, ReadOnlySpan<float> w, int V, int D, int dh)
    {
        var outp = new double[V * dh];
        for (int t = 0; t < V; t++)
            for (int d = 0; d < D; d++)
            {
                double x = we[t * D + d];
                var wr = w.Slice(d * dh, dh);
                for (int e = 0; e < dh; e++) outp[t * dh + e] += x * wr[e];
            }
        return outp;
    }
}
