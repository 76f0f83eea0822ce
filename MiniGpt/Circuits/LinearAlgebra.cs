using System.Numerics;
using System.Numerics.Tensors;

namespace MiniGpt.Circuits;

/// <summary>A thin QR factorisation A [m,n] = Q [m,p] · R [p,n], p = min(m,n), QᵀQ = I, R upper trapezoidal.</summary>
public sealed record QrResult(Matrix Q, Matrix R);

/// <summary>A thin SVD A [m,n] = U [m,k] · diag(S) [k] · Vᵀ [k,n], k = min(m,n), S descending, UᵀU = VᵀV = I.</summary>
public sealed record SvdResult(Matrix U, double[] S, Matrix Vt);

/// <summary>A symmetric eigendecomposition A = V·diag(λ)·Vᵀ, λ descending, eigenvector i in column i of V.</summary>
public sealed record SymmetricEigenResult(double[] Values, Matrix Vectors);

/// <summary>
/// Small dense double-precision linear algebra, written out for the circuits code (matrices up to a
/// few hundred rows and columns; the large dimension of a circuit never reaches these routines
/// except through thin QR, which is linear in it). Algorithms are the textbook ones
/// (Golub and Van Loan, "Matrix Computations", 4th ed.; chapter numbers beside each).
/// </summary>
public static class LinearAlgebra
{
    // ---------------------------------------------------------------- products

    /// <summary>C [m,n] = A [m,k] · B [k,n] (i-k-j order so the inner loop runs along rows of B and C).</summary>
    public static Matrix MatMul(Matrix a, Matrix b)
    {
        if (a.Cols != b.Rows) throw new ArgumentException($"cannot multiply [{a.Rows}, {a.Cols}] by [{b.Rows}, {b.Cols}]");
        int m = a.Rows, k = a.Cols, n = b.Cols;
        var c = new Matrix(m, n);
        double[] ad = a.Data, bd = b.Data, cd = c.Data;
        for (int i = 0; i < m; i++)
        {
            var ci = cd.AsSpan(i * n, n);
            for (int p = 0; p < k; p++)
            {
                double aip = ad[i * k + p];
                if (aip == 0) continue;
                TensorPrimitives.MultiplyAdd(bd.AsSpan(p * n, n), aip, ci, ci); // C_i += a_ip·B_p (SIMD)
            }
        }
        return c;
    }

    /// <summary>C [m,n] = A [m,k] · Bᵀ, B [n,k] (rows of A dotted with rows of B).</summary>
    public static Matrix MatMulTransB(Matrix a, Matrix b)
    {
        if (a.Cols != b.Cols) throw new ArgumentException($"cannot multiply [{a.Rows}, {a.Cols}] by the transpose of [{b.Rows}, {b.Cols}]");
        int m = a.Rows, n = b.Rows;
        var c = new Matrix(m, n);
        for (int i = 0; i < m; i++)
        {
            var ai = a.Row(i);
            for (int j = 0; j < n; j++) c[i, j] = Dot(ai, b.Row(j));
        }
        return c;
    }

    /// <summary>y [n] = x [k] · B [k,n] (a row vector times a matrix).</summary>
    public static double[] VecMat(ReadOnlySpan<double> x, Matrix b)
    {
        if (x.Length != b.Rows) throw new ArgumentException($"cannot multiply a vector of {x.Length} by [{b.Rows}, {b.Cols}]");
        var y = new double[b.Cols];
        for (int p = 0; p < x.Length; p++)
        {
            double xp = x[p];
            if (xp == 0) continue;
            TensorPrimitives.MultiplyAdd(b.Row(p), xp, y, y);
        }
        return y;
    }

    public static double Dot(ReadOnlySpan<double> x, ReadOnlySpan<double> y) => TensorPrimitives.Dot(x, y);

    public static Matrix Transpose(Matrix a)
    {
        var t = new Matrix(a.Cols, a.Rows);
        for (int i = 0; i < a.Rows; i++)
            for (int j = 0; j < a.Cols; j++)
                t.Data[j * a.Rows + i] = a.Data[i * a.Cols + j];
        return t;
    }

    public static double Trace(Matrix a)
    {
        double s = 0;
        for (int i = 0; i < Math.Min(a.Rows, a.Cols); i++) s += a[i, i];
        return s;
    }

    // ---------------------------------------------------------------- QR (Golub & Van Loan §5.2.1)

    /// <summary>
    /// Householder QR: for k = 0..p−1 the reflector H_k = I − 2·v·vᵀ (‖v‖ = 1) maps column k of the
    /// remaining rows, x = R[k:, k], onto α·e₁ with α = −sign(x₀)·‖x‖ (the sign that avoids cancellation).
    /// R = H_{p−1}…H_0·A; Q = H_0…H_{p−1} restricted to its first p columns, built backwards.
    /// </summary>
    public static QrResult Qr(Matrix a)
    {
        int m = a.Rows, n = a.Cols, p = Math.Min(m, n);
        var r = a.Clone();
        double[] rd = r.Data;
        var vs = new double[p][];
        var work = new double[n];
        for (int k = 0; k < p; k++)
        {
            var v = new double[m - k];
            double norm = 0;
            for (int i = k; i < m; i++) { v[i - k] = rd[i * n + k]; norm += v[i - k] * v[i - k]; }
            norm = Math.Sqrt(norm);
            if (norm == 0) { vs[k] = v; continue; } // column already zero: H_k = I (v = 0)
            double alpha = v[0] >= 0 ? -norm : norm;
            v[0] -= alpha;
            double vnorm = Math.Sqrt(Dot(v, v));
            if (vnorm == 0) { Array.Clear(v); vs[k] = v; continue; }
            for (int i = 0; i < v.Length; i++) v[i] /= vnorm;
            vs[k] = v;
            // R[k:, k:] -= 2·v·(vᵀ·R[k:, k:]), row by row (contiguous): w = vᵀ·R[k:, k:], then R_i -= 2·v_i·w
            ReflectRows(rd, n, k, m, k, v, work);
            rd[k * n + k] = alpha;
            for (int i = k + 1; i < m; i++) rd[i * n + k] = 0;
        }
        // Q = H_0·…·H_{p−1}·[I_p; 0]: apply the reflectors to the first p columns of I_m, last first
        var q = new Matrix(m, p);
        double[] qd = q.Data;
        for (int i = 0; i < p; i++) qd[i * p + i] = 1;
        // (columns j < k of the partial product are still e_j, which H_k leaves alone)
        for (int k = p - 1; k >= 0; k--) ReflectRows(qd, p, k, m, k, vs[k], work);
        var rThin = new Matrix(p, n);
        Array.Copy(rd, rThin.Data, p * n);
        return new QrResult(q, rThin);
    }

    // X[rows k..m−1, columns c0..cols−1] ← (I − 2·v·vᵀ)·X, X row-major with `cols` columns, v [m − k]
    private static void ReflectRows(double[] x, int cols, int k, int m, int c0, double[] v, double[] work)
    {
        int w = cols - c0;
        var acc = work.AsSpan(0, w);
        acc.Clear();
        for (int i = k; i < m; i++)
        {
            double vi = v[i - k];
            if (vi == 0) continue;
            TensorPrimitives.MultiplyAdd(x.AsSpan(i * cols + c0, w), vi, acc, acc);
        }
        for (int i = k; i < m; i++)
        {
            double f = 2 * v[i - k];
            if (f == 0) continue;
            var row = x.AsSpan(i * cols + c0, w);
            TensorPrimitives.MultiplyAdd(acc, -f, row, row);
        }
    }

    // ---------------------------------------------------------------- symmetric eigenproblem (G&VL §8.5, cyclic Jacobi)

    /// <summary>
    /// Cyclic Jacobi: sweep over all pairs (p, q), p &lt; q, applying the rotation J with
    /// c = 1/√(1+t²), s = t·c, t = sign(θ)/(|θ| + √(θ²+1)), θ = (a_qq − a_pp)/(2·a_pq), the smaller root
    /// of t² + 2θt − 1 = 0, which zeroes a_pq in A ← JᵀAJ. Sweeps until the off-diagonal mass is
    /// negligible. The product of the rotations is V, the eigenvectors.
    /// </summary>
    public static SymmetricEigenResult SymmetricEigen(Matrix a, int maxSweeps = 100)
    {
        int n = a.Rows;
        if (a.Cols != n) throw new ArgumentException($"symmetric eigendecomposition needs a square matrix, got [{a.Rows}, {a.Cols}]");
        if (!a.IsFinite()) // NaN or ∞ in A: NaN values and vectors, which the reports show as –
        {
            var nan = new Matrix(n, n);
            Array.Fill(nan.Data, double.NaN);
            return new SymmetricEigenResult(Enumerable.Repeat(double.NaN, n).ToArray(), nan);
        }
        var w = a.Clone();
        // symmetrise against round-off in the caller's product
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
            {
                double s = 0.5 * (w[i, j] + w[j, i]);
                w[i, j] = s; w[j, i] = s;
            }
        var v = Matrix.Identity(n);
        double total = w.FrobeniusNorm();
        for (int sweep = 0; sweep < maxSweeps; sweep++)
        {
            double off = 0;
            for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++) off += w[i, j] * w[i, j];
            if (Math.Sqrt(off) <= 1e-15 * total || off == 0) break;
            for (int p = 0; p < n - 1; p++)
                for (int q = p + 1; q < n; q++)
                {
                    double apq = w[p, q];
                    if (Math.Abs(apq) <= 1e-300) continue;
                    double theta = (w[q, q] - w[p, p]) / (2 * apq);
                    double t = Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    // columns: A ← A·J  (J has c, s in row p and −s, c in row q of columns p, q)
                    for (int k = 0; k < n; k++)
                    {
                        double akp = w[k, p], akq = w[k, q];
                        w[k, p] = c * akp - s * akq;
                        w[k, q] = s * akp + c * akq;
                    }
                    // rows: A ← Jᵀ·A
                    for (int k = 0; k < n; k++)
                    {
                        double apk = w[p, k], aqk = w[q, k];
                        w[p, k] = c * apk - s * aqk;
                        w[q, k] = s * apk + c * aqk;
                    }
                    w[p, q] = 0; w[q, p] = 0;
                    for (int k = 0; k < n; k++)
                    {
                        double vkp = v[k, p], vkq = v[k, q];
                        v[k, p] = c * vkp - s * vkq;
                        v[k, q] = s * vkp + c * vkq;
                    }
                }
        }
        // sort descending, permuting the eigenvector columns with the values
        var order = new int[n];
        var values = new double[n];
        for (int i = 0; i < n; i++) { order[i] = i; values[i] = w[i, i]; }
        Array.Sort(order, (x, y) => values[y].CompareTo(values[x]));
        var sortedValues = new double[n];
        var sortedVectors = new Matrix(n, n);
        for (int j = 0; j < n; j++)
        {
            sortedValues[j] = values[order[j]];
            for (int i = 0; i < n; i++) sortedVectors[i, j] = v[i, order[j]];
        }
        return new SymmetricEigenResult(sortedValues, sortedVectors);
    }

    // ---------------------------------------------------------------- SVD (G&VL §8.6.3, one-sided Jacobi, Hestenes 1958)

    /// <summary>
    /// One-sided Jacobi on the columns u_p of A (m ≥ n; otherwise the SVD of Aᵀ is transposed): rotate
    /// each pair of columns so they become orthogonal, with the same rotation as two-sided Jacobi on the
    /// 2×2 Gram matrix [[α, γ], [γ, β]], α = ‖u_p‖², β = ‖u_q‖², γ = u_p·u_q. When all columns are
    /// orthogonal, A·V = U·diag(S) with S_j = ‖u_j‖. Accurate to the relative precision of each σ.
    /// </summary>
    public static SvdResult Svd(Matrix a, int maxSweeps = 100)
    {
        int m = a.Rows, n = a.Cols;
        if (!a.IsFinite()) // NaN or ∞ in A (a diverged model): NaN factors, which the reports show as –
        {
            int k = Math.Min(m, n);
            Matrix Nan(int r, int c) { var x = new Matrix(r, c); Array.Fill(x.Data, double.NaN); return x; }
            return new SvdResult(Nan(m, k), Enumerable.Repeat(double.NaN, k).ToArray(), Nan(k, n));
        }
        if (m < n)
        {
            var t = Svd(Transpose(a), maxSweeps); // Aᵀ = U'·S·V'ᵀ  ⇒  A = V'·S·U'ᵀ
            return new SvdResult(Transpose(t.Vt), t.S, Transpose(t.U));
        }
        // work on columns as contiguous rows: ut [n, m] = Aᵀ, vt [n, n] = Vᵀ
        var ut = Transpose(a);
        var vt = Matrix.Identity(n);
        for (int sweep = 0; sweep < maxSweeps; sweep++)
        {
            bool rotated = false;
            for (int p = 0; p < n - 1; p++)
                for (int q = p + 1; q < n; q++)
                {
                    var up = ut.Row(p);
                    var uq = ut.Row(q);
                    double alpha = Dot(up, up), beta = Dot(uq, uq), gamma = Dot(up, uq);
                    if (gamma == 0 || Math.Abs(gamma) <= 1e-15 * Math.Sqrt(alpha * beta)) continue;
                    rotated = true;
                    double zeta = (beta - alpha) / (2 * gamma);
                    double t = Math.Sign(zeta == 0 ? 1 : zeta) / (Math.Abs(zeta) + Math.Sqrt(1 + zeta * zeta));
                    double c = 1 / Math.Sqrt(1 + t * t), s = c * t;
                    Rotate(up, uq, c, s);
                    Rotate(vt.Row(p), vt.Row(q), c, s);
                }
            if (!rotated) break;
        }
        var sv = new double[n];
        for (int j = 0; j < n; j++) sv[j] = Math.Sqrt(Dot(ut.Row(j), ut.Row(j)));
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Array.Sort(order, (x, y) => sv[y].CompareTo(sv[x]));
        double smax = n > 0 ? sv[order[0]] : 0;
        var u = new Matrix(m, n);
        var vtOut = new Matrix(n, n);
        var s2 = new double[n];
        var empty = new bool[n];
        for (int j = 0; j < n; j++)
        {
            int src = order[j];
            double sigma = sv[src];
            s2[j] = sigma;
            vt.Row(src).CopyTo(vtOut.Row(j));
            if (sigma > 1e-300 && sigma > 1e-14 * smax)
                for (int i = 0; i < m; i++) u[i, j] = ut[src, i] / sigma;
            else empty[j] = true;
        }
        // columns for (numerically) zero singular values: complete U to orthonormal columns by
        // Gram–Schmidt of unit vectors e_i against the columns already set (twice is enough: Kahan–Parlett)
        for (int j = 0; j < n; j++)
        {
            if (!empty[j]) continue;
            var cand = new double[m];
            for (int e = 0; e < m; e++)
            {
                Array.Clear(cand);
                cand[e] = 1;
                for (int pass = 0; pass < 2; pass++)
                    for (int k = 0; k < n; k++)
                    {
                        if (empty[k]) continue;
                        double d = 0;
                        for (int i = 0; i < m; i++) d += u[i, k] * cand[i];
                        for (int i = 0; i < m; i++) cand[i] -= d * u[i, k];
                    }
                double norm = Math.Sqrt(Dot(cand, cand));
                if (norm < 0.5) continue;
                for (int i = 0; i < m; i++) u[i, j] = cand[i] / norm;
                break;
            }
            empty[j] = false;
        }
        return new SvdResult(u, s2, vtOut);
    }

    private static void Rotate(Span<double> x, Span<double> y, double c, double s)
    {
        for (int i = 0; i < x.Length; i++)
        {
            double xi = x[i], yi = y[i];
            x[i] = c * xi - s * yi;
            y[i] = s * xi + c * yi;
        }
    }

    // ---------------------------------------------------------------- general eigenvalues (G&VL §7.5)

    /// <summary>
    /// Eigenvalues of a real square matrix, sorted by decreasing modulus (conjugate pairs adjacent,
    /// positive imaginary part first). Steps: balance (Parlett–Reinsch, exact powers of 2, so the
    /// eigenvalues are unchanged); reduce to upper Hessenberg form by Householder similarities; then
    /// Francis double-shift QR iterations (implicit, via 3-element reflectors chasing the bulge), deflating
    /// 1×1 blocks (real eigenvalues) and 2×2 blocks (complex pairs or two reals) off the bottom.
    /// </summary>
    public static Complex[] Eigenvalues(Matrix a)
    {
        int n = a.Rows;
        if (a.Cols != n) throw new ArgumentException($"eigenvalues need a square matrix, got [{a.Rows}, {a.Cols}]");
        // NaN or ∞ in A (a diverged model's circuits): no eigenvalue is defined, and the QR iteration would not converge
        if (!a.IsFinite()) return Enumerable.Repeat(new Complex(double.NaN, double.NaN), n).ToArray();
        var h = a.Clone();
        Balance(h);
        ReduceToHessenberg(h);
        var result = HessenbergQr(h);
        Array.Sort(result, (x, y) =>
        {
            int c = y.Magnitude.CompareTo(x.Magnitude);
            if (c != 0) return c;
            c = y.Real.CompareTo(x.Real);
            return c != 0 ? c : y.Imaginary.CompareTo(x.Imaginary);
        });
        return result;
    }

    // D⁻¹·A·D with D diagonal powers of 2 chosen so each row and column have similar 1-norms
    private static void Balance(Matrix a)
    {
        int n = a.Rows;
        const double radix = 2, radix2 = radix * radix;
        bool done = false;
        for (int iter = 0; !done && iter < 100; iter++)
        {
            done = true;
            for (int i = 0; i < n; i++)
            {
                double c = 0, r = 0;
                for (int j = 0; j < n; j++)
                {
                    if (j == i) continue;
                    c += Math.Abs(a[j, i]);
                    r += Math.Abs(a[i, j]);
                }
                if (c == 0 || r == 0) continue;
                double g = r / radix, f = 1, s = c + r;
                while (c < g) { f *= radix; c *= radix2; }
                g = r * radix;
                while (c > g) { f /= radix; c /= radix2; }
                if ((c + r) / f < 0.95 * s)
                {
                    done = false;
                    double inv = 1 / f;
                    for (int j = 0; j < n; j++) a[i, j] *= inv; // row i of D⁻¹·A
                    for (int j = 0; j < n; j++) a[j, i] *= f;   // column i of A·D
                }
            }
        }
    }

    // H = Qᵀ·A·Q upper Hessenberg: for each column k, a reflector on rows k+1.. zeroes A[k+2.., k]
    private static void ReduceToHessenberg(Matrix a)
    {
        int n = a.Rows;
        for (int k = 0; k < n - 2; k++)
        {
            int len = n - k - 1;
            var v = new double[len];
            double norm = 0;
            for (int i = 0; i < len; i++) { v[i] = a[k + 1 + i, k]; norm += v[i] * v[i]; }
            norm = Math.Sqrt(norm);
            if (norm == 0) continue;
            double alpha = v[0] >= 0 ? -norm : norm;
            v[0] -= alpha;
            double vnorm = Math.Sqrt(Dot(v, v));
            if (vnorm == 0) continue;
            for (int i = 0; i < len; i++) v[i] /= vnorm;
            // left: A[k+1.., :] -= 2·v·(vᵀ·A[k+1.., :])
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int i = 0; i < len; i++) s += v[i] * a[k + 1 + i, j];
                s *= 2;
                for (int i = 0; i < len; i++) a[k + 1 + i, j] -= s * v[i];
            }
            // right: A[:, k+1..] -= 2·(A[:, k+1..]·v)·vᵀ
            for (int i = 0; i < n; i++)
            {
                double s = 0;
                for (int j = 0; j < len; j++) s += a[i, k + 1 + j] * v[j];
                s *= 2;
                for (int j = 0; j < len; j++) a[i, k + 1 + j] -= s * v[j];
            }
            a[k + 1, k] = alpha;
            for (int i = k + 2; i < n; i++) a[i, k] = 0;
        }
    }

    // Francis double-shift QR on an upper Hessenberg matrix (eigenvalues only: the updates are
    // restricted to the active block [lo..hi]). Shifts are the eigenvalues of the trailing 2×2 block,
    // entered through their sum and product, so the arithmetic stays real. Exceptional shifts at
    // iterations 10 and 20 (and every 10 after) break the rare cycles of the standard shift.
    private static Complex[] HessenbergQr(Matrix a)
    {
        int n = a.Rows;
        var roots = new Complex[n];
        double norm = 0;
        for (int i = 0; i < n; i++)
            for (int j = Math.Max(i - 1, 0); j < n; j++) norm += Math.Abs(a[i, j]);
        int hi = n - 1, its = 0;
        double shift = 0; // exceptional shifts accumulated into the diagonal
        const double eps = 2.220446049250313e-16;
        while (hi >= 0)
        {
            // lo: start of the unreduced block ending at hi (H[lo, lo−1] negligible)
            int lo = hi;
            for (; lo > 0; lo--)
            {
                double s = Math.Abs(a[lo - 1, lo - 1]) + Math.Abs(a[lo, lo]);
                if (s == 0) s = norm;
                if (Math.Abs(a[lo, lo - 1]) <= eps * s) { a[lo, lo - 1] = 0; break; }
            }
            double x = a[hi, hi];
            if (lo == hi) // a 1×1 block: one real eigenvalue
            {
                roots[hi] = new Complex(x + shift, 0);
                hi--; its = 0;
                continue;
            }
            double y = a[hi - 1, hi - 1], w = a[hi, hi - 1] * a[hi - 1, hi];
            if (lo == hi - 1) // a 2×2 block [[y, b], [c, x]], w = b·c: λ = x + p ± √(p² + w), p = (y − x)/2
            {
                double p = 0.5 * (y - x), q = p * p + w, z = Math.Sqrt(Math.Abs(q));
                x += shift;
                if (q >= 0) // two real roots; the second from the product (−w) to avoid cancellation
                {
                    z = p + (p >= 0 ? z : -z);
                    double r1 = x + z, r2 = z != 0 ? x - w / z : x + z;
                    roots[hi - 1] = new Complex(r1, 0);
                    roots[hi] = new Complex(r2, 0);
                }
                else
                {
                    roots[hi - 1] = new Complex(x + p, z);
                    roots[hi] = new Complex(x + p, -z);
                }
                hi -= 2; its = 0;
                continue;
            }
            if (its >= 100) throw new InvalidOperationException("eigenvalues: the QR iteration did not converge in 100 iterations");
            if (its > 0 && its % 10 == 0) // exceptional shift (Wilkinson; EISPACK hqr)
            {
                shift += x;
                for (int i = lo; i <= hi; i++) a[i, i] -= x;
                double s = Math.Abs(a[hi, hi - 1]) + Math.Abs(a[hi - 1, hi - 2]);
                x = y = 0.75 * s;
                w = -0.4375 * s * s;
            }
            its++;
            // find m ≥ lo where two consecutive subdiagonals are small enough to start the bulge at m:
            // the first column of (H − σ₁)(H − σ₂) restricted to rows m, m+1, m+2 is (p, q, r)
            int m;
            double pp = 0, qq = 0, rr = 0;
            for (m = hi - 2; m >= lo; m--)
            {
                double z = a[m, m];
                double r = x - z, s = y - z;
                pp = (r * s - w) / a[m + 1, m] + a[m, m + 1];
                qq = a[m + 1, m + 1] - z - r - s;
                rr = a[m + 2, m + 1];
                s = Math.Abs(pp) + Math.Abs(qq) + Math.Abs(rr);
                pp /= s; qq /= s; rr /= s;
                if (m == lo) break;
                double u = Math.Abs(a[m, m - 1]) * (Math.Abs(qq) + Math.Abs(rr));
                double v = Math.Abs(pp) * (Math.Abs(a[m - 1, m - 1]) + Math.Abs(z) + Math.Abs(a[m + 1, m + 1]));
                if (u <= eps * v) break;
            }
            for (int i = m + 2; i <= hi; i++)
            {
                a[i, i - 2] = 0;
                if (i != m + 2) a[i, i - 3] = 0;
            }
            // chase the bulge from m to hi with 3-element reflectors (2-element on the last step)
            for (int k = m; k <= hi - 1; k++)
            {
                double scale = 0;
                if (k != m)
                {
                    pp = a[k, k - 1];
                    qq = a[k + 1, k - 1];
                    rr = k != hi - 1 ? a[k + 2, k - 1] : 0;
                    scale = Math.Abs(pp) + Math.Abs(qq) + Math.Abs(rr);
                    if (scale != 0) { pp /= scale; qq /= scale; rr /= scale; }
                }
                double sn = Math.Sqrt(pp * pp + qq * qq + rr * rr);
                if (pp < 0) sn = -sn;
                if (sn == 0) continue;
                if (k == m) { if (lo != m) a[k, k - 1] = -a[k, k - 1]; }
                else a[k, k - 1] = -sn * scale;
                pp += sn;
                double hx = pp / sn, hy = qq / sn, hz = rr / sn;
                qq /= pp; rr /= pp;
                // rows k..k+2 (reflector from the left) over the active columns
                for (int j = k; j <= hi; j++)
                {
                    double t = a[k, j] + qq * a[k + 1, j];
                    if (k != hi - 1)
                    {
                        t += rr * a[k + 2, j];
                        a[k + 2, j] -= t * hz;
                    }
                    a[k + 1, j] -= t * hy;
                    a[k, j] -= t * hx;
                }
                // columns k..k+2 (from the right) over the active rows
                int iMax = Math.Min(hi, k + 3);
                for (int i = lo; i <= iMax; i++)
                {
                    double t = hx * a[i, k] + hy * a[i, k + 1];
                    if (k != hi - 1)
                    {
                        t += hz * a[i, k + 2];
                        a[i, k + 2] -= t * rr;
                    }
                    a[i, k + 1] -= t * qq;
                    a[i, k] -= t;
                }
            }
        }
        return roots;
    }

    // ---------------------------------------------------------------- Cholesky (G&VL §4.2)

    /// <summary>
    /// log det A for symmetric positive definite A, via Cholesky A = L·Lᵀ: log det A = 2·Σ log L_ii.
    /// Throws if A is not positive definite (a pivot ≤ 0); NaN when A holds NaN or ∞.
    /// </summary>
    public static double LogDetSpd(Matrix a)
    {
        int n = a.Rows;
        if (a.Cols != n) throw new ArgumentException($"log-determinant needs a square matrix, got [{a.Rows}, {a.Cols}]");
        var l = new Matrix(n, n);
        double logdet = 0;
        for (int j = 0; j < n; j++)
        {
            // L_jj = √(A_jj − Σ_k<j L_jk²);  L_ij = (A_ij − Σ_k<j L_ik·L_jk) / L_jj for i > j
            var lj = l.Row(j)[..j];
            double d = a[j, j] - Dot(lj, lj);
            if (double.IsNaN(d) || double.IsInfinity(d)) return double.NaN; // NaN or ∞ in A (a diverged model): no log-determinant
            if (!(d > 0)) throw new ArgumentException($"matrix is not positive definite (pivot {d:G4} at {j})");
            double ljj = Math.Sqrt(d);
            l[j, j] = ljj;
            logdet += 2 * Math.Log(ljj);
            for (int i = j + 1; i < n; i++)
                l[i, j] = (a[i, j] - Dot(l.Row(i)[..j], lj)) / ljj;
        }
        return logdet;
    }
}
