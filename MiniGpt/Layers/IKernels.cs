using MiniGpt.Tensors;

namespace MiniGpt.Layers;

/// <summary>
/// Every operation of a training step whose fast form differs from its readable one, behind one
/// interface (as the C# llm.c port Llm.cs puts its kernels behind one): <see cref="Kernels.Reference"/>
/// runs the plain loops beside each layer (the scalar matmul, one row or head after another), which a
/// debugger can step; <see cref="Kernels.Fast"/> runs the SIMD matmul, the fused attention and the
/// parallel row-wise kernels. A model picks one set when it is made (<see cref="Model.GptModel.Kernels"/>);
/// nothing global switches it afterwards. The benchmarks and the tests that compare the two sets call
/// the same interface. Shapes are in the comments of the layer methods each member runs.
/// </summary>
public interface IKernels
{
    /// <summary>"fast" or "reference".</summary>
    string Name { get; }

    /// <summary>The matrix products (SIMD or scalar).</summary>
    IMatMul MatMul { get; }

    /// <summary>y[n] += b for every row n of y [N, O] (Linear.AddBias).</summary>
    void AddBias(Span<float> y, ReadOnlySpan<float> b, int N, int O);

    /// <summary>acc[c] += Σ_n m[n, c] over m [N, C], rows in order (Linear.SumRows).</summary>
    void SumRows(ReadOnlySpan<float> m, Span<float> acc, int N, int C);

    /// <summary>dst = a + b elementwise: the residual stream (dst may alias a or b).</summary>
    void Add(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> dst);

    void LayerNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b,
        Span<float> y, Span<float> mean, Span<float> rstd, int N, int C);

    void LayerNormBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> mean, ReadOnlySpan<float> rstd,
        ReadOnlySpan<float> dy, Span<float> dx, Span<float> dw, Span<float> db, Span<float> xhat, Span<float> g, int N, int C);

    void GeluForward(ReadOnlySpan<float> x, Span<float> y);

    void GeluBackward(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, Span<float> tScratch, bool accumulate);

    /// <summary>Per-row losses into losses [N]; returns their sum (in double, rows in order).</summary>
    double CrossEntropyForward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> losses, int N, int V);

    void CrossEntropyBackward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, Span<float> dLogits, float scale, int N, int V);

    /// <summary>q, k from x_qk and v from x_v, every head (Attention.ProjectQkv).</summary>
    void ProjectQkv(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w,
        Span<float> q, Span<float> k, Span<float> v, int B, int T, int D, int H, int dh);

    /// <summary>Differentiates <see cref="ProjectQkv"/>: accumulates into the weight and bias gradients and into dxqk, dxv.</summary>
    void ProjectQkvBackward(ReadOnlySpan<float> xqk, ReadOnlySpan<float> xv, in Attention.Weights w, in Attention.Grads g,
        ReadOnlySpan<float> dq, ReadOnlySpan<float> dk, ReadOnlySpan<float> dv, Span<float> dxqk, Span<float> dxv, int N, int D, int H, int dh);

    /// <summary>The given stages of every (batch, head): scores, pattern, z (Attention.HeadForward).</summary>
    void Heads(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> scores, Span<float> pattern, Span<float> z,
        int B, int T, int H, int dh, HeadStages stages);

    /// <summary>
    /// Differentiates the given stages of <see cref="Heads"/> (Attention.HeadBackward). dPattern and dScores
    /// [B, H, T, T] hold d loss / d pattern and d loss / d scores where a call stops between stages (written
    /// by the stage that makes them, read by the next): dPattern is needed when exactly one of Mix and Pattern
    /// runs, dScores when exactly one of Pattern and Scores does; otherwise either may be empty. pattern is what
    /// the stage being differentiated read: the Mix stage the pattern z was mixed with, the Pattern stage the
    /// softmax's output.
    /// </summary>
    void HeadsBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> pattern, ReadOnlySpan<float> dz,
        Span<float> dq, Span<float> dk, Span<float> dv, Span<float> dPattern, Span<float> dScores, int B, int T, int H, int dh, HeadStages stages);

    /// <summary>
    /// All three stages of every (batch, head) without the [B, H, T, T] scores and pattern (Attention.HeadForwardTiled):
    /// z, and per query row the softmax's max and sum, softmaxMax and softmaxSum [B, H, T], from which
    /// <see cref="HeadsTiledBackward"/> recomputes the pattern. z is bitwise what <see cref="Heads"/> gives with all stages.
    /// With a non-empty pattern [B, H, T, T] it also writes each pattern row there (zero past the diagonal), bitwise what
    /// <see cref="Heads"/> writes, so that <see cref="HeadsBackward"/> can read it instead of recomputing it.
    /// </summary>
    void HeadsTiled(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> z, Span<float> softmaxMax, Span<float> softmaxSum,
        int B, int T, int H, int dh, Span<float> pattern = default);

    /// <summary>
    /// Differentiates <see cref="HeadsTiled"/> (Attention.HeadBackwardTiled), recomputing the pattern from q, k and the
    /// row statistics: dq, dk, dv are bitwise what <see cref="HeadsBackward"/> gives with all stages on the materialised pattern.
    /// </summary>
    void HeadsTiledBackward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, ReadOnlySpan<float> softmaxMax, ReadOnlySpan<float> softmaxSum,
        ReadOnlySpan<float> dz, Span<float> dq, Span<float> dk, Span<float> dv, int B, int T, int H, int dh);

    /// <summary>
    /// y = x·W[g] + b for one position and G matrices W [G, I, O] at once (<see cref="Generation.Gemv"/>): the
    /// matrix-vector products of cached decoding, each weight read once per token.
    /// </summary>
    void Gemv(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> b, Span<float> y, int G, int I, int O);

    /// <summary>One AdamW step over the flat parameter buffer p and its gradient and moments (same layout), segment by segment.</summary>
    void AdamW(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, ReadOnlySpan<ParamSegment> segments, in AdamWStep step);
}

/// <summary>The kernel sets, and the one a new model gets unless it is given another.</summary>
public static class Kernels
{
    public static readonly IKernels Reference = new ReferenceKernels();
    public static readonly IKernels Fast = new FastKernels();

    /// <summary>Environment variable that picks the set for models made without one: fast (default) or scalar.</summary>
    public const string EnvironmentVariable = "MINIGPT_KERNELS";

    /// <summary>
    /// The set named by MINIGPT_KERNELS: "scalar" (or "reference") for the readable loops a debugger can
    /// step, "fast" (or unset) for the SIMD kernels. Read when a model is made, so a program can set it first.
    /// </summary>
    public static IKernels Default => Named(Environment.GetEnvironmentVariable(EnvironmentVariable));

    /// <summary>"fast", "scalar" or "reference" (null or empty: fast); anything else is a one-line error.</summary>
    public static IKernels Named(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        null or "" or "fast" or "simd" => Fast,
        "scalar" or "reference" => Reference,
        _ => throw new UserError($"{EnvironmentVariable}='{name}' is not a kernel set: use fast or scalar (the readable reference kernels)"),
    };
}

/// <summary>
/// The three stages of attention inside one head, in forward order. Heads runs the given stages;
/// HeadsBackward differentiates them (Mix first: its gradient is the one that arrives first).
/// </summary>
[Flags]
public enum HeadStages
{
    /// <summary>scores[i, j] = q_i·k_j / √d_head for j ≤ i, −∞ above the diagonal (hook_attn_scores).</summary>
    Scores = 1,
    /// <summary>pattern[i, :] = softmax over j ≤ i of scores[i, :], 0 above the diagonal (hook_pattern).</summary>
    Pattern = 2,
    /// <summary>z_i = Σ_j pattern[i, j]·v_j (hook_z).</summary>
    Mix = 4,
    All = Scores | Pattern | Mix,
}

/// <summary>A run of the flat parameter buffer [Start, Start + Length) whose tensors all decay, or all do not.</summary>
public readonly record struct ParamSegment(int Start, int Length, bool Decay);

/// <summary>
/// The scalars of one AdamW step: lr, β1, β2, ε, the bias corrections 1 − βᵗ, the decoupled decay
/// factor 1 − lr·λ applied to decaying segments, and the factor each gradient is multiplied by as it is read
/// (global-norm clipping's maxNorm/‖g‖, applied here instead of in a pass of its own over the gradients).
/// </summary>
public readonly record struct AdamWStep(float Lr, float Beta1, float Beta2, float Eps, float Bc1, float Bc2, float DecayFactor, float GradScale = 1f);
