using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Running;

namespace Monitoring.Stream.Hosting.Benchmarks;

/// <summary>Runs the hosting benchmarks; arguments go to <see cref="BenchmarkSwitcher"/> (e.g. --filter '*Query*').</summary>
public static class Program
{
    public static void Main(string[] args)
    {
        IConfig config = DefaultConfig.Instance
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(StatisticColumn.Median)
            .WithOption(ConfigOptions.JoinSummary, true);
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
    }
}
