using System.Text.Json;
using System.Text.RegularExpressions;

namespace Monitoring.Stream.Browser.Tests;

/// <summary>The page the executable ships (src/Monitoring.Stream.Server/wwwroot) is what web/build.sh makes of web/.</summary>
public sealed partial class ShippedPageTests
{
    private static string Wwwroot => Path.Combine(RepositoryPaths.Root, "src", "Monitoring.Stream.Server", "wwwroot");

    [Theory]
    [InlineData("index.html")]
    [InlineData("app.js")]
    [InlineData("app.css")]
    public void Wwwroot_SourceFile_IsTheBuiltCopyOfWebSrc(string file)
    {
        string source = File.ReadAllText(Path.Combine(RepositoryPaths.Root, "web", "src", file));
        string shipped = File.ReadAllText(Path.Combine(Wwwroot, file));
        Assert.True(source == shipped, $"wwwroot/{file} differs from web/src/{file}: run web/build.sh and commit the result");
    }

    [Fact]
    public void Wwwroot_ChartingLibrary_IsTheVersionPinnedInPackageJson()
    {
        using JsonDocument package = JsonDocument.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.Root, "web", "package.json")));
        string pinned = package.RootElement.GetProperty("dependencies").GetProperty("uplot").GetString()!;
        Assert.Matches(@"^\d+\.\d+\.\d+$", pinned);
        string header = File.ReadLines(Path.Combine(Wwwroot, "vendor", "uPlot.iife.min.js")).First();
        Assert.Equal(pinned, VersionComment().Match(header).Groups[1].Value);
    }

    [Fact]
    public void Wwwroot_Page_LoadsNothingFromElsewhere()
    {
        // Every src and href of the page is a path on the service (or a data: URL), never another host.
        string html = File.ReadAllText(Path.Combine(Wwwroot, "index.html"));
        MatchCollection references = Reference().Matches(html);
        Assert.NotEmpty(references);
        Assert.All(references, m => Assert.DoesNotMatch("^(https?:)?//", m.Groups[1].Value));
    }

    [GeneratedRegex(@"\(v(\d+\.\d+\.\d+)\)")]
    private static partial Regex VersionComment();

    [GeneratedRegex("(?:src|href)=\"([^\"]*)\"")]
    private static partial Regex Reference();
}
