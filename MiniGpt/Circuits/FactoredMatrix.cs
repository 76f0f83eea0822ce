using System.Numerics;

namespace MiniGpt.Circuits;

/// <summary>
/// A matrix M = A·B kept as its two factors, A [m, r] and B [r, n], as TransformerLens's
/// <c>FactoredMatrix</c> (transformer_lens/FactoredMatrix.py) does: the circuits of a transformer are
/// products such as W_E·W_Q·W_Kᵀ·W_Eᵀ [d_vocab, d_vocab] whose rank is at most d_head, so everything
/// people ask of them (SVD, eigenvalues, norm, a row) can be answered in O((m + n)·r²) without ever
/// forming the m×n product. <see cref="ToDense"/> forms it when asked.
///
/// Differences from TransformerLens: no leading (batch) dimensions; Svd returns Vᵀ [k, n] (TL's
/// <c>Vh</c> is V, with U·diag(S)·Vhᵀ = M); the SVD goes through thin QRs of A and Bᵀ (TL takes the
/// SVDs of A and B), which gives the same U, S, V up to signs.
/// </summary>
public sealed class FactoredMatrix
{
    /// <summary>Left factor [Rows, InnerDim].</summary>
    public Matrix A { get; }
    /// <summary>Right factor [InnerDim, Cols].</summary>
    public Matrix B { get; }

    private Core? _core;
    private SvdResult? _svd;
    private Complex[]? _eigenvalues;

    public FactoredMatrix(Matrix a, Matrix b)
    {
        if (a.Cols != b.Rows) throw new ArgumentException($"factors must agree on the inner dimension: A is [{a.Rows}, {a.Cols}], B is [{b.Rows}, {b.Cols}]");
        A = a;
        B = b;
    }

    public int Rows => A.Rows;
    public int Cols => B.Cols;
    /// <summary>r, the shared dimension of the factors (TL's mdim).</summary>
    public int InnerDim => A.Cols;
    /// <summary>rank(A·B) ≤ min(m, n, r).</summary>
    public int RankBound => Math.Min(Math.Min(Rows, Cols), InnerDim);

    /// <summary>The product A·B [m, n] (TL's <c>AB</c>): O(m·n·r) time and m·n memory.</summary>
    public Matrix ToDense() => LinearAlgebra.MatMul(A, B);

    /// <summary>The reverse product B·A [r, r] (TL's <c>BA</c>); needs a square M.</summary>
    public Matrix ReverseProduct()
    {
        RequireSquare("B·A");
        return LinearAlgebra.MatMul(B, A);
    }

    /// <summary>Row i of M: A[i, :]·B [n], in O(r·n).</summary>
    public double[] Row(int i) => LinearAlgebra.VecMat(A.Row(i), B);

    /// <summary>Column j of M: A·B[:, j] [m], in O(m·r).</summary>
    public double[] Column(int j)
    {
        var bj = new double[InnerDim];
        for (int k = 0; k < bj.Length; k++) bj[k] = B[k, j];
        var col = new double[Rows];
        for (int i = 0; i < col.Length; i++) col[i] = LinearAlgebra.Dot(A.Row(i), bj);
        return col;
    }

    /// <summary>M[i, j] = Σ_k A[i, k]·B[k, j].</summary>
    public double this[int i, int j]
    {
        get
        {
            double s = 0;
            for (int k = 0; k < InnerDim; k++) s += A[i, k] * B[k, j];
            return s;
        }
    }

    /// <summary>Mᵀ = Bᵀ·Aᵀ, still factored (TL's <c>T</c>).</summary>
    public FactoredMatrix Transpose() => new(B.Transpose(), A.Transpose()) { _core = _core?.Transposed() };

    /// <summary>
    /// Composition M·N with M = A·B, N = C·D: (A·B)·(C·D) keeps the smaller inner dimension,
    /// A·((B·C)·D) if r_M ≤ r_N, else ((A·B)·C)·D, so the result's inner dimension is min(r_M, r_N).
    /// </summary>
    public FactoredMatrix Multiply(FactoredMatrix other)
    {
        if (Cols != other.Rows) throw new ArgumentException($"cannot compose [{Rows}, {Cols}] with [{other.Rows}, {other.Cols}]");
        var middle = LinearAlgebra.MatMul(B, other.A); // [r_M, r_N]
        return InnerDim <= other.InnerDim
            ? new FactoredMatrix(A, LinearAlgebra.MatMul(middle, other.B))
            : new FactoredMatrix(LinearAlgebra.MatMul(A, middle), other.B);
    }

    /// <summary>M·R for a dense R [n, p]: A·(B·R).</summary>
    public FactoredMatrix Multiply(Matrix right) => new(A, LinearAlgebra.MatMul(B, right));

    /// <summary>L·M for a dense L [p, m]: (L·A)·B.</summary>
    public FactoredMatrix LeftMultiply(Matrix left) => new(LinearAlgebra.MatMul(left, A), B);

    public FactoredMatrix Scale(double s)
    {
        var a = A.Clone();
        for (int i = 0; i < a.Data.Length; i++) a.Data[i] *= s;
        return new FactoredMatrix(a, B);
    }

    // ---------------------------------------------------------------- spectra

    // M = Qa·Ra·Rbᵀ·Qbᵀ with A = Qa·Ra (thin QR, Qa [m, p], Ra [p, r]) and Bᵀ = Qb·Rb (Qb [n, q], Rb [q, r]);
    // the core C = Ra·Rbᵀ [p, q] carries every singular value of M, and Qa, Qb have orthonormal columns.
    // The core of Mᵀ = Bᵀ·Aᵀ is the same with a and b swapped and Cᵀ, so Transpose passes it on.
    internal sealed record Core(Matrix Qa, Matrix Ra, Matrix Qb, Matrix Rb, Matrix C)
    {
        public Core Transposed() => new(Qb, Rb, Qa, Ra, C.Transpose());
    }

    internal Core GetCore()
    {
        if (_core != null) return _core;
        var qa = LinearAlgebra.Qr(A);
        var qb = LinearAlgebra.Qr(B.Transpose());
        _core = new Core(qa.Q, qa.R, qb.Q, qb.R, LinearAlgebra.MatMulTransB(qa.R, qb.R));
        return _core;
    }

    /// <summary>
    /// ‖M·N‖_F without forming the product's factors' QRs again: with M = Qa·Ra·B and N = C·Rbᵀ·Qbᵀ
    /// (Ra from M's core, Rb from N's), M·N = Qa·(Ra·(B·C)·Rbᵀ)·Qbᵀ and ‖M·N‖_F = ‖Ra·(B·C)·Rbᵀ‖_F.
    /// Costs one [r_M, k]·[k, r_N] product once both cores exist (the composition scores use it for every pair).
    /// </summary>
    public static double ProductFrobeniusNorm(FactoredMatrix m, FactoredMatrix n)
    {
        if (m.Cols != n.Rows) throw new ArgumentException($"cannot compose [{m.Rows}, {m.Cols}] with [{n.Rows}, {n.Cols}]");
        var middle = LinearAlgebra.MatMul(m.B, n.A);                               // [r_M, r_N]
        var inner = LinearAlgebra.MatMulTransB(LinearAlgebra.MatMul(m.GetCore().Ra, middle), n.GetCore().Rb); // [p, q]
        return inner.FrobeniusNorm();
    }

    /// <summary>
    /// Thin SVD M = U [m, k]·diag(S) [k]·Vᵀ [k, n], k = min(m, n, r), S descending, without forming M:
    /// SVD the core C = Uc·S·Vcᵀ; then U = Qa·Uc and Vᵀ = Vcᵀ·Qbᵀ (orthonormal, as products of
    /// matrices with orthonormal columns). Trailing singular values may be 0 when the factors are
    /// rank-deficient. Cached.
    /// </summary>
    public SvdResult Svd()
    {
        if (_svd != null) return _svd;
        var core = GetCore();
        var c = LinearAlgebra.Svd(core.C);
        var u = LinearAlgebra.MatMul(core.Qa, c.U);
        var vt = LinearAlgebra.MatMulTransB(c.Vt, core.Qb);
        _svd = new SvdResult(u, c.S, vt);
        return _svd;
    }

    /// <summary>Singular values, descending (k = min(m, n, r) of them).</summary>
    public double[] SingularValues() => Svd().S;

    /// <summary>‖M‖_F = ‖Ra·Rbᵀ‖_F (Qa, Qb have orthonormal columns, which preserve the Frobenius norm) = √(Σσ²).</summary>
    public double FrobeniusNorm => GetCore().C.FrobeniusNorm();

    /// <summary>
    /// Eigenvalues of a square M = A·B through the smaller of A·B [m, m] and B·A [r, r]: if B·A·v = λ·v
    /// with λ ≠ 0, then A·B·(A·v) = λ·(A·v) and A·v ≠ 0, so the two share their nonzero eigenvalues
    /// (TL's FactoredMatrix.eigenvalues uses B·A). Returns min(m, r) values sorted by decreasing modulus;
    /// when r &lt; m the other m − r eigenvalues of M are 0. Cached.
    /// </summary>
    public Complex[] Eigenvalues()
    {
        RequireSquare("eigenvalues");
        if (_eigenvalues != null) return _eigenvalues;
        var small = InnerDim <= Rows ? LinearAlgebra.MatMul(B, A) : ToDense();
        _eigenvalues = LinearAlgebra.Eigenvalues(small);
        return _eigenvalues;
    }

    /// <summary>
    /// The eigenvalue copying score of Elhage et al. 2021 ("A Mathematical Framework for Transformer
    /// Circuits", section "Detecting copying behaviour"): Σᵢλᵢ / Σᵢ|λᵢ| ∈ [−1, 1]. We take the real part of
    /// the numerator: for a real matrix the eigenvalues come in conjugate pairs, so Σλ is real (= trace)
    /// up to round-off and Re(Σλ) = Σ Re λ = tr(B·A). 1 means every eigenvalue is positive real (the
    /// circuit copies: a token raises its own logit); −1 means all negative real; near 0, no copying.
    /// The zero eigenvalues that B·A drops add nothing to either sum. 0 for the zero matrix.
    /// </summary>
    public double CopyingScore() => EigenvalueScore(Eigenvalues());

    /// <summary>Re(Σλ) / Σ|λ| for a list of eigenvalues (see <see cref="CopyingScore"/>).</summary>
    public static double EigenvalueScore(ReadOnlySpan<Complex> eigenvalues)
    {
        double num = 0, den = 0;
        foreach (var l in eigenvalues)
        {
            num += l.Real;
            den += l.Magnitude;
        }
        return den == 0 ? 0 : num / den;
    }

    private void RequireSquare(string what)
    {
        if (Rows != Cols) throw new InvalidOperationException($"{what} needs a square matrix, this one is [{Rows}, {Cols}]");
    }

    public override string ToString() => $"FactoredMatrix [{Rows}, {Cols}], inner dimension {InnerDim}";
}
