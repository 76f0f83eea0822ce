using MiniGpt;
using MiniGpt.Tensors;
using MiniGpt.Train;

// minigpt: train, evaluate and sample small GPTs on the CPU, and read their circuits.
// Exit codes: 0 success, 1 a problem with the data, files or training (message on stderr), 2 a malformed command line,
// 130 train stopped by Ctrl-C after writing its checkpoint.
return Cli.Run(args, Console.Out, Console.Error);

namespace MiniGpt.Train
{
    public static class Cli
    {
        public const string Usage = """
            usage: minigpt <verb> [options]      (dotnet run --project MiniGpt.Train -c Release -- <verb> ...)

            verbs:
              prepare  tokenize a text corpus once into train.bin/val.bin token files for train to stream
              train    train a model (with no options: a 2-layer attention-only model on the induction task)
              eval     mean next-token loss of a checkpoint on a file, optionally its gradients
              sample   generate text from a checkpoint
              circuits find a checkpoint's heads and circuits: summary table, circuits.json, plots and report.html
              patch    activation, attribution and path patching, logit lens and direct logit attribution: patch.json, heatmaps, patch.html
              convert  a checkpoint (MiniGpt, Hugging Face GPT-2, llm.c .bin) as MiniGpt's safetensors or the Hugging Face GPT-2 layout
              sae      a sparse autoencoder on one hook point: SAELens-layout weights, L0, explained variance, loss recovered, report.html
              superposition  toy models of superposition (Elhage et al. 2022): WᵀW, feature norms and dimensionality by sparsity, the pentagon, the phase diagram
              bench    median time of a training step for a model shape, with tokens/s and model FLOP utilisation

            '<verb> --help' lists a verb's options and their defaults.
            """;

        /// <summary>Every verb with its option declarations (for --help and the test that every option shows its default).</summary>
        internal static readonly IReadOnlyList<(string Verb, Func<Options> Declare)> Verbs =
        [
            ("prepare", PrepareVerb.Declare), ("train", TrainVerb.Declare), ("eval", EvalVerb.Declare), ("sample", SampleVerb.Declare),
            ("circuits", CircuitsVerb.Declare), ("patch", PatchVerb.Declare), ("sae", SaeVerb.Declare), ("convert", ConvertVerb.Declare), ("bench", BenchVerb.Declare),
            ("superposition", SuperpositionVerb.Declare),
        ];

        public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
        {
            if (args.Length == 0 || args[0] is "--help" or "-h" or "help")
            {
                stdout.WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }
            try
            {
                string[] rest = args[1..];
                return args[0] switch
                {
                    "train" => TrainVerb.Run(rest, stdout),
                    "prepare" => PrepareVerb.Run(rest, stdout),
                    "eval" => EvalVerb.Run(rest, stdout),
                    "sample" => SampleVerb.Run(rest, stdout),
                    "bench" => BenchVerb.Run(rest, stdout),
                    "circuits" => CircuitsVerb.Run(rest, stdout),
                    "patch" => PatchVerb.Run(rest, stdout),
                    "sae" => SaeVerb.Run(rest, stdout),
                    "convert" => ConvertVerb.Run(rest, stdout),
                    "superposition" => SuperpositionVerb.Run(rest, stdout),
                    _ => throw new UsageError($"unknown verb '{args[0]}': use prepare, train, eval, sample, circuits, patch, sae, superposition, convert or bench (see --help)"),
                };
            }
            catch (UsageError e) { stderr.WriteLine($"error: {e.Message}"); return 2; }
            catch (UserError e) { stderr.WriteLine($"error: {e.Message}"); return 1; }
            catch (UnauthorizedAccessException e) { stderr.WriteLine($"error: {e.Message} (check the file's permissions)"); return 1; }
            catch (IOException e) { stderr.WriteLine($"error: {e.Message} (check the path and free disk space)"); return 1; }
            catch (OutOfMemoryException) { stderr.WriteLine("error: out of memory: reduce --batch-size, --n-ctx or the model size"); return 1; }
        }

        /// <summary>--threads, shared by every verb: the kernels' worker count (results do not depend on it).</summary>
        internal static void ApplyThreads(Options o) => WorkerPool.SetSharedThreads(o.Get(SharedOptions.Threads));
    }
}
