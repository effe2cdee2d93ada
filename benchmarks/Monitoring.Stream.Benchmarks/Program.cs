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
        IConfig config = DefaultConfig.Instance
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(StatisticColumn.Median)
            .WithOption(ConfigOptions.JoinSummary, true);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
        return 0;
    }
}
