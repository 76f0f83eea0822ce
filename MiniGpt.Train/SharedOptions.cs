using MiniGpt.Training;

namespace MiniGpt.Train;

/// <summary>Options that mean the same in every verb that takes them, so each is declared once, here.</summary>
internal static class SharedOptions
{
    /// <summary>The kernels' worker count (see Cli.ApplyThreads); every verb but prepare takes it.</summary>
    public static readonly Option<int> Threads =
        Option.Int("threads", "worker threads (results are identical for any count)", Environment.ProcessorCount, shown: "all cores")
            .Check(t => t is >= 1 and <= 256, "must be in [1, 256]");

    /// <summary>
    /// The checkpoint eval, sample, circuits, patch, sae and convert read: a file, or a run folder that stands for
    /// its latest checkpoint (CheckpointPath.Resolve, as train --resume picks it), resolved as the line is parsed.
    /// </summary>
    public static readonly Option<string> Checkpoint = Option.Required("checkpoint",
            "model checkpoint: .safetensors with 'config' metadata, a run folder runs/NAME (its latest model.safetensors), a Hugging Face GPT-2 folder or llm.c .bin", "F")
        .Shown(ValueNames.Path).ParsedBy((_, v) => Runs.CheckpointPath.Resolve(v));

    /// <summary>Windows per training step: train's, and bench's, which times that step.</summary>
    public static readonly Option<int> BatchSize = Option.Int("batch-size", "windows per step", new TrainOptions().BatchSize);

    /// <summary>How train and prepare tokenize text; each verb says in its help where a BPE is learned from.</summary>
    public static readonly Option<string> Tokenizer = Option.Text("tokenizer", "char, bpe:N, cl100k_base, o200k_base or gpt2", new TrainOptions().Tokenizer)
        .Choices("char", "bpe:N", "cl100k_base", "o200k_base", "gpt2");
}
