using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Monitoring.Stream.Hosting.Bridge;
using Monitoring.Stream.Hosting.Dashboard;
using Monitoring.Stream.Hosting.Http;
using Monitoring.Stream.Hosting.Instruments;
using Monitoring.Stream.Hosting.Tests.Support;

namespace Monitoring.Stream.Hosting.Tests.Docs;

public partial class SdkDocTests
{
    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Monitoring.Stream.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Monitoring.Stream.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex(@"<!-- snippet: (?<name>[a-z]+) -->\s*```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex DocBlock();

    [GeneratedRegex(@"// <snippet:(?<name>[a-z]+)>\n(?<code>.*?)\n\s*// </snippet:\k<name>>", RegexOptions.Singleline)]
    private static partial Regex SourceRegion();

    private static string Dedent(string code)
    {
        string[] lines = code.Replace("\r", string.Empty, StringComparison.Ordinal).TrimEnd('\n').Split('\n');
        int indent = lines.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return string.Join('\n', lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
    }

    [Fact]
    public void SdkDoc_EveryCsharpBlock_IsQuotedVerbatimFromCompiledSnippets()
    {
        string root = RepositoryRoot();
        string doc = File.ReadAllText(Path.Combine(root, "docs", "sdk.md"));
        string source = File.ReadAllText(Path.Combine(root, "tests", "Monitoring.Stream.Hosting.Tests", "Docs", "SdkSnippets.cs"));
        var regions = SourceRegion().Matches(source).ToDictionary(m => m.Groups["name"].Value, m => Dedent(m.Groups["code"].Value));
        var blocks = DocBlock().Matches(doc).Select(m => (Name: m.Groups["name"].Value, Code: Dedent(m.Groups["code"].Value))).ToList();

        Assert.Equal(regions.Keys.Order(), blocks.Select(b => b.Name).Order());
        foreach ((string name, string code) in blocks)
        {
            Assert.True(regions[name] == code, $"docs/sdk.md block '{name}' differs from its region in SdkSnippets.cs:\n{code}\n---\n{regions[name]}");
        }

        // Every csharp block of the page is one of the checked ones.
        Assert.Equal(blocks.Count, Regex.Count(doc, "```csharp"));
    }

    [Fact]
    public async Task Snippets_RunAgainstAnEngine_DoWhatTheDocSays()
    {
        string meterName = "MyCompany.Docs." + Guid.NewGuid().ToString("N");
        await using var engine = new EngineFixture(nowUnixMs: EngineFixture.T0 + 1_000);
        using var meter = new Meter(meterName);
        using var bridge = new MeterBridge(engine.Collector, new MeterBridgeOptions { Meters = { meterName } }, engine.Time);
        var documents = new DocumentMetrics(engine.Collector);

        SdkSnippets.Instruments(engine.Collector);
        SdkSnippets.Bridge(meter);
        Assert.Equal(1, await SdkSnippets.Documents(documents, new byte[100]));
        await engine.StopAsync();
        SdkSnippets.Queries(engine.Queries);
        string json = await SdkSnippets.Dashboard(new DashboardDataService(engine.Queries, engine.Pipeline, time: engine.Time));

        Assert.Equal(1, engine.Collector.GetRejectedCount(Model.RejectReason.NegativeCounterIncrement));
        Assert.Equal(1, engine.Collector.GetRejectedCount(Model.RejectReason.LabelCountMismatch));
        Assert.Equal(2, engine.Queries.GetMatching("checkout_duration_seconds", Model.LabelSet.Empty, TimeSpan.FromHours(1))!.Count);
        Assert.Equal(1, engine.Queries.GetMatching("shop_orders_placed", Model.LabelSet.Empty, TimeSpan.FromHours(1))!.Sum);
        using JsonDocument doc = JsonDocument.Parse(json);
        Assert.Equal(2, doc.RootElement.GetProperty("documents").GetProperty("count").GetInt64());
    }

    [Fact]
    public async Task QuickStart_Builds_WithEveryServiceResolvable()
    {
        await using WebApplication app = SdkSnippets.QuickStart(["--MonitoringStream:SystemMetricsEnabled=false", "--MonitoringStream:ArrowStoreEnabled=false"]);

        Assert.NotNull(app.Services.GetRequiredService<DashboardDataService>());
        Assert.NotNull(app.Services.GetRequiredService<MetricsCollector>());
    }
}
