using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Running;

namespace Monitoring.Stream.Benchmarks;

/// <summary>Runs the BenchmarkDotNet suite; arguments go to <see cref="BenchmarkSwitcher"/> (e.g. --filter '*Sketch*').</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "load")
        {
            return Load.LoadHarness.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "load-http")
        {
            return Load.HttpLoadHarness.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "decode-cpu")
        {
            return Kafka.DecodeCpuHarness.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "kafka-e2e")
        {
            return Load.KafkaEndToEndHarness.Run(args[1..]);
        }

        IConfig config = DefaultConfig.Instance
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(StatisticColumn.Median)
            .WithOption(ConfigOptions.JoinSummary, true);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
        return 0;
    }
}
