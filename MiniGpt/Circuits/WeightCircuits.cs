using System.Numerics;
using MiniGpt.Model;

namespace MiniGpt.Circuits;

/// <summary>The spectra of one circuit: singular values (descending), eigenvalues (by decreasing modulus,
/// empty when not square), and the eigenvalue score Re(Σλ)/Σ|λ| (NaN when not square).</summary>
public sealed record CircuitSpectrum(string Name, int Rows, int Cols, double[] SingularValues, Complex[] Eigenvalues, double EigenvalueScore)
{
    public static CircuitSpectrum Of(string name, FactoredMatrix m)
    {
        bool square = m.Rows == m.Cols;
        var eig = square ? m.Eigenvalues() : [];
        return new CircuitSpectrum(name, m.Rows, m.Cols, m.SingularValues(), eig, square ? FactoredMatrix.EigenvalueScore(eig) : double.NaN);
    }

    /// <summary>
    /// The spectra of a square M = A·B [rows, rows] (A [rows, r], B [r, rows]) from r × r matrices alone: ga = AᵀA,
    /// gb = B·Bᵀ and ba = B·A. With F_a = Λ^½·Vᵀ from AᵀA = V·Λ·Vᵀ (so F_aᵀF_a = AᵀA, and A = Q_a·F_a for some Q_a
    /// with orthonormal columns), and F_b likewise from B·Bᵀ, M = Q_a·(F_a·F_bᵀ)·Q_bᵀ: the r × r core F_a·F_bᵀ has
    /// M's singular values; B·A has its nonzero eigenvalues (as <see cref="FactoredMatrix.Eigenvalues"/>). Going through
    /// AᵀA squares the condition number, and WeightCircuits makes the d_model × d_model Grams in float: singular values
    /// below about 3·10⁻⁴ of the largest (√ of float round-off) are noise; the large ones agree to ~10⁻⁸ (GPT-2 small).
    /// </summary>
    public static CircuitSpectrum FromGrams(string name, int rows, Matrix ga, Matrix gb, Matrix ba)
    {
        var core = LinearAlgebra.MatMulTransB(Root(ga), Root(gb));
        var eig = LinearAlgebra.Eigenvalues(ba);
        return new CircuitSpectrum(name, rows, rows, LinearAlgebra.Svd(core).S, eig, FactoredMatrix.EigenvalueScore(eig));
    }

    // F = Λ^½·Vᵀ with FᵀF = G for a symmetric positive semi-definite G = V·Λ·Vᵀ (round-off negatives clamped to 0)
    private static Matrix Root(Matrix g)
    {
        var e = LinearAlgebra.SymmetricEigen(g);
        int n = g.Rows;
        var f = new Matrix(n, n);
        for (int i = 0; i < n; i++)
        {
            double s = Math.Sqrt(Math.Max(0, e.Values[i]));
            for (int j = 0; j < n; j++) f[i, j] = s * e.Vectors[j, i];
        }
        return f;
    }
}

/// <summary>
/// The weight circuits of Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"
/// (transformer-circuits.pub/2021/framework), read from a model's parameters (TransformerLens names and
/// shapes) in double precision and kept factored (<see cref="FactoredMatrix"/>), so no
/// d_vocab × d_vocab matrix is formed unless <see cref="FactoredMatrix.ToDense"/> is called.
///
/// Conventions (row vectors, as TransformerLens): a residual vector x [d_model] is a row;
/// q = x·W_Q[h] + b_Q[h], k = y·W_K[h] + b_K[h]; the attention score the model computes is
/// q·kᵀ / √d_head. The QK circuits below are the bilinear forms q·kᵀ WITHOUT the 1/√d_head scale
/// (as the paper and TL's <c>model.QK</c> define them); multiply by <see cref="AttentionScale"/> for the
/// pre-softmax score. The circuits exclude the biases (except Ω, which is there to include them) and
/// LayerNorm: for a LayerNorm model, fold it first (<see cref="LayerNormFolding.FoldLayerNorm"/>) so the
/// weights read the normalised residual stream directly (as TL's fold_ln does before circuit analysis).
/// </summary>
public sealed class WeightCircuits
{
    public ModelConfig Config { get; }
    /// <summary>W_E [d_vocab, d_model], W_pos [n_ctx, d_model], W_U [d_model, d_vocab], b_U [d_vocab].</summary>
    public Matrix WE { get; }
    public Matrix WPos { get; }
    public Matrix WU { get; }
    public double[] BU { get; }

    private readonly Matrix[][] _wq, _wk, _wv, _wo; // [layer][head]: [d_model, d_head] ×3, [d_head, d_model]
    private readonly double[][][] _bq, _bk, _bv;     // [layer][head][d_head]
    private readonly double[][] _bo;                 // [layer][d_model]

    /// <summary>
    /// Multiply-adds above which <see cref="HeadSpectra"/> reads the d_vocab-sized circuits (token QK and OV, four
    /// [d_vocab, d_model]·[d_model, d_head] products per head) through d_model × d_model Gram matrices made once
    /// (<see cref="CircuitSpectrum.FromGrams"/>): for GPT-2 small the direct way is 1.4·10¹² multiply-adds and 9
    /// minutes, the Gram way 9·10¹⁰ in the model's float kernels and a few d_model² · d_head products per head.
    /// </summary>
    public const long DirectWork = 1L << 33;

    /// <summary>Whether HeadSpectra goes through the Gram matrices (see <see cref="DirectWork"/>).</summary>
    public bool ViaGrams => 4L * Config.DVocab * Config.DModel * Config.DHead * Config.NLayers * Config.NHeads > DirectWork;

    private readonly GptModel _model;
    private Matrix? _gramE, _gramU, _unembedEmbed;

    public WeightCircuits(GptModel model)
    {
        var c = model.Config;
        Config = c;
        _model = model;
        var p = model.Params;
        int D = c.DModel, H = c.NHeads, dh = c.DHead, L = c.NLayers;
        WE = Matrix.FromFloats(p["embed.W_E"].Span, c.DVocab, D);
        WPos = Matrix.FromFloats(p["pos_embed.W_pos"].Span, c.NCtx, D);
        WU = Matrix.FromFloats(p["unembed.W_U"].Span, D, c.DVocab);
        BU = ToDoubles(p["unembed.b_U"].Span);
        _wq = new Matrix[L][]; _wk = new Matrix[L][]; _wv = new Matrix[L][]; _wo = new Matrix[L][];
        _bq = new double[L][][]; _bk = new double[L][][]; _bv = new double[L][][]; _bo = new double[L][];
        for (int l = 0; l < L; l++)
        {
            string b = $"blocks.{l}.attn.";
            _wq[l] = Heads(p[b + "W_Q"].Span, H, D, dh);
            _wk[l] = Heads(p[b + "W_K"].Span, H, D, dh);
            _wv[l] = Heads(p[b + "W_V"].Span, H, D, dh);
            _wo[l] = Heads(p[b + "W_O"].Span, H, dh, D);
            _bq[l] = HeadBiases(p[b + "b_Q"].Span, H, dh);
            _bk[l] = HeadBiases(p[b + "b_K"].Span, H, dh);
            _bv[l] = HeadBiases(p[b + "b_V"].Span, H, dh);
            _bo[l] = ToDoubles(p[b + "b_O"].Span);
        }
    }

    public int NLayers => Config.NLayers;
    public int NHeads => Config.NHeads;

    /// <summary>1/√d_head: the model's attention score is (QK-circuit entry)·AttentionScale.</summary>
    public double AttentionScale => 1.0 / Math.Sqrt(Config.DHead);

    public Matrix WQ(int l, int h) => _wq[Check(l)][CheckHead(h)];
    public Matrix WK(int l, int h) => _wk[Check(l)][CheckHead(h)];
    public Matrix WV(int l, int h) => _wv[Check(l)][CheckHead(h)];
    public Matrix WO(int l, int h) => _wo[Check(l)][CheckHead(h)];
    public double[] BQ(int l, int h) => _bq[Check(l)][CheckHead(h)];
    public double[] BK(int l, int h) => _bk[Check(l)][CheckHead(h)];
    public double[] BV(int l, int h) => _bv[Check(l)][CheckHead(h)];
    public double[] BO(int l) => _bo[Check(l)];

    // ---------------------------------------------------------------- circuits

    /// <summary>
    /// The direct path W_E·W_U [d_vocab, d_vocab], factored through d_model: the zero-layer model's
    /// logits (the bigram table, up to b_U) — "Zero-Layer Transformers" in the paper.
    /// </summary>
    public FactoredMatrix DirectPath() => new(WE, WU);

    /// <summary>W_QK[h] = W_Q[h]·W_K[h]ᵀ [d_model, d_model], rank ≤ d_head (TL's <c>model.QK</c>): x·W_QK·yᵀ = q·kᵀ without biases.</summary>
    public FactoredMatrix QK(int l, int h) => new(WQ(l, h), WK(l, h).Transpose());

    /// <summary>W_OV[h] = W_V[h]·W_O[h] [d_model, d_model], rank ≤ d_head (TL's <c>model.OV</c>): what the head writes when it attends to y is y·W_OV.</summary>
    public FactoredMatrix OV(int l, int h) => new(WV(l, h), WO(l, h));

    /// <summary>
    /// Token QK circuit W_E·W_Q[h]·W_K[h]ᵀ·W_Eᵀ [d_vocab, d_vocab] = (W_E·W_Q)·(W_E·W_K)ᵀ: entry (i, j) is
    /// q·k for query token i and key token j read straight from the embedding (biases, positions and
    /// LayerNorm excluded), before the 1/√d_head scale.
    /// </summary>
    public FactoredMatrix TokenQkCircuit(int l, int h) =>
        new(LinearAlgebra.MatMul(WE, WQ(l, h)), LinearAlgebra.MatMul(WE, WK(l, h)).Transpose());

    /// <summary>
    /// Positional QK circuit W_pos·W_Q[h]·W_K[h]ᵀ·W_posᵀ [n_ctx, n_ctx]: entry (i, j) is q·k from the
    /// position embeddings of query position i and key position j alone, before the 1/√d_head scale.
    /// </summary>
    public FactoredMatrix PositionalQkCircuit(int l, int h) =>
        new(LinearAlgebra.MatMul(WPos, WQ(l, h)), LinearAlgebra.MatMul(WPos, WK(l, h)).Transpose());

    /// <summary>
    /// OV circuit W_E·W_V[h]·W_O[h]·W_U [d_vocab, d_vocab] = (W_E·W_V)·(W_O·W_U): row t is the change in
    /// the logits when the head attends only to token t (biases b_V, b_O, b_U excluded; b_V would add
    /// the constant b_V·W_O·W_U to every row since the pattern sums to 1).
    /// </summary>
    public FactoredMatrix OvCircuit(int l, int h) =>
        new(LinearAlgebra.MatMul(WE, WV(l, h)), LinearAlgebra.MatMul(WO(l, h), WU));

    /// <summary>
    /// The QK bilinear form with biases in homogeneous coordinates: with x̃ = [x, 1] and ỹ = [y, 1]
    /// [d_model + 1],  (x·W_Q + b_Q)·(y·W_K + b_K)ᵀ = x̃·Ω·ỹᵀ, where
    ///   Ω = [[W_Q·W_Kᵀ, W_Q·b_Kᵀ], [b_Q·W_Kᵀ, b_Q·b_Kᵀ]] = [W_Q; b_Q]·[W_K; b_K]ᵀ,
    /// a [(d_model+1), (d_model+1)] matrix of rank ≤ d_head, factored as the two stacked [d_model+1, d_head]
    /// matrices. Before the 1/√d_head scale.
    /// </summary>
    public FactoredMatrix Omega(int l, int h)
    {
        var q = Stack(WQ(l, h), BQ(l, h));
        var k = Stack(WK(l, h), BK(l, h));
        return new FactoredMatrix(q, k.Transpose());
    }

    // ---------------------------------------------------------------- spectra and copying

    /// <summary>The eigenvalue copying score of head (l, h)'s OV circuit W_E·W_V·W_O·W_U (see <see cref="FactoredMatrix.CopyingScore"/>).</summary>
    public double OvCopyingScore(int l, int h) => OvCircuit(l, h).CopyingScore();

    /// <summary>
    /// The same eigenvalue score of the OV circuit, read from the d_head × d_head matrix W_O·(W_U·W_E)·W_V: A·B and
    /// B·A (A = W_E·W_V, B = W_O·W_U) have the same nonzero eigenvalues, and W_U·W_E is made once
    /// (<see cref="UnembedEmbed"/>), so every head costs a few d_model²·d_head products even for GPT-2 small's
    /// vocabulary (the suppression scores read it for every head of every probe).
    /// </summary>
    public double OvEigenvalueScore(int l, int h) =>
        FactoredMatrix.EigenvalueScore(LinearAlgebra.Eigenvalues(Sandwich(WO(l, h), UnembedEmbed, WV(l, h))));

    /// <summary>OV-circuit copying scores of every head, [n_layers, n_heads].</summary>
    public double[,] OvCopyingScores()
    {
        var s = new double[NLayers, NHeads];
        for (int l = 0; l < NLayers; l++)
            for (int h = 0; h < NHeads; h++) s[l, h] = OvCopyingScore(l, h);
        return s;
    }

    /// <summary>
    /// Singular values and eigenvalues of every circuit of head (l, h): W_QK, W_OV, the token and
    /// positional QK circuits, the OV circuit and Ω. The eigenvalue score of the token QK circuit is
    /// positive when tokens attend to themselves (the paper's QK analogue of the copying score).
    /// </summary>
    /// <param name="viaGrams">read the token QK and OV circuits through the Gram matrices (null: <see cref="ViaGrams"/>).</param>
    public IReadOnlyList<CircuitSpectrum> HeadSpectra(int l, int h, bool? viaGrams = null)
    {
        bool grams = viaGrams ?? ViaGrams;
        int V = Config.DVocab;
        return
        [
            CircuitSpectrum.Of("W_QK", QK(l, h)),
            CircuitSpectrum.Of("W_OV", OV(l, h)),
            // W_E·W_Q·W_Kᵀ·W_Eᵀ = A·B with A = W_E·W_Q, B = (W_E·W_K)ᵀ: AᵀA = W_Qᵀ·G_E·W_Q, B·Bᵀ = W_Kᵀ·G_E·W_K, B·A = W_Kᵀ·G_E·W_Q
            grams ? TokenQkFromGrams(l, h) : CircuitSpectrum.Of("token_qk", TokenQkCircuit(l, h)),
            CircuitSpectrum.Of("positional_qk", PositionalQkCircuit(l, h)),
            // W_E·W_V·W_O·W_U = A·B with A = W_E·W_V, B = W_O·W_U: AᵀA = W_Vᵀ·G_E·W_V, B·Bᵀ = W_O·G_U·W_Oᵀ, B·A = W_O·(W_U·W_E)·W_V
            grams ? CircuitSpectrum.FromGrams("ov", V, Sandwich(WV(l, h).Transpose(), GramE, WV(l, h)),
                        Sandwich(WO(l, h), GramU, WO(l, h).Transpose()), Sandwich(WO(l, h), UnembedEmbed, WV(l, h)))
                  : CircuitSpectrum.Of("ov", OvCircuit(l, h)),
            CircuitSpectrum.Of("omega", Omega(l, h)),
        ];
    }

    /// <summary>G_E = W_Eᵀ·W_E [d_model, d_model], in the model's float kernels, once.</summary>
    public Matrix GramE => _gramE ??= FloatProduct((mm, e, u, g) => mm.TN(e, e, g, false));
    /// <summary>G_U = W_U·W_Uᵀ [d_model, d_model].</summary>
    public Matrix GramU => _gramU ??= FloatProduct((mm, e, u, g) => mm.NT(u, u, g, false));
    /// <summary>W_U·W_E [d_model, d_model].</summary>
    public Matrix UnembedEmbed => _unembedEmbed ??= FloatProduct((mm, e, u, g) => mm.NN(u, e, g, false));

    private delegate void Product(MiniGpt.Tensors.IMatMul mm, CommunityToolkit.HighPerformance.ReadOnlySpan2D<float> we,
        CommunityToolkit.HighPerformance.ReadOnlySpan2D<float> wu, CommunityToolkit.HighPerformance.Span2D<float> result);

    // a d_model × d_model product of W_E [V, D] and W_U [D, V] over the vocabulary, in float (the SIMD kernels), as doubles
    private Matrix FloatProduct(Product product)
    {
        int D = Config.DModel, V = Config.DVocab;
        var g = new float[D * D];
        product(_model.Kernels.MatMul, _model.Params["embed.W_E"].AsSpan2D(V, D), _model.Params["unembed.W_U"].AsSpan2D(D, V),
            new CommunityToolkit.HighPerformance.Span2D<float>(g, D, D));
        return Matrix.FromFloats(g, D, D);
    }

    private static Matrix Sandwich(Matrix a, Matrix b, Matrix c) => LinearAlgebra.MatMul(LinearAlgebra.MatMul(a, b), c);

    private CircuitSpectrum TokenQkFromGrams(int l, int h)
    {
        var kG = LinearAlgebra.MatMul(WK(l, h).Transpose(), GramE); // W_Kᵀ·G_E [d_head, d_model], shared by B·Bᵀ and B·A
        return CircuitSpectrum.FromGrams("token_qk", Config.DVocab, Sandwich(WQ(l, h).Transpose(), GramE, WQ(l, h)),
            LinearAlgebra.MatMul(kG, WK(l, h)), LinearAlgebra.MatMul(kG, WQ(l, h)));
    }

    // ---------------------------------------------------------------- helpers

    // [W; b]: W [d_model, d_head] with the row b [d_head] appended
    private static Matrix Stack(Matrix w, double[] b)
    {
        var s = new Matrix(w.Rows + 1, w.Cols);
        Array.Copy(w.Data, s.Data, w.Data.Length);
        b.CopyTo(s.Row(w.Rows));
        return s;
    }

    private static Matrix[] Heads(ReadOnlySpan<float> all, int heads, int rows, int cols)
    {
        var m = new Matrix[heads];
        for (int h = 0; h < heads; h++) m[h] = Matrix.FromFloats(all.Slice(h * rows * cols, rows * cols), rows, cols);
        return m;
    }

    private static double[][] HeadBiases(ReadOnlySpan<float> all, int heads, int dh)
    {
        var b = new double[heads][];
        for (int h = 0; h < heads; h++) b[h] = ToDoubles(all.Slice(h * dh, dh));
        return b;
    }

    private static double[] ToDoubles(ReadOnlySpan<float> s)
    {
        var d = new double[s.Length];
        for (int i = 0; i < s.Length; i++) d[i] = s[i];
        return d;
    }

    private int Check(int l) => (uint)l < (uint)NLayers ? l : throw new ArgumentOutOfRangeException(nameof(l), $"layer {l} is outside [0, {NLayers})");
    private int CheckHead(int h) => (uint)h < (uint)NHeads ? h : throw new ArgumentOutOfRangeException(nameof(h), $"head {h} is outside [0, {NHeads})");
}
