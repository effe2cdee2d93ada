namespace Monitoring.Stream.Browser.Tests;

/// <summary>The browser tests share one Chromium and run one at a time (each starts its own service processes).</summary>
[CollectionDefinition(Name)]
public sealed class BrowserTestGroup : ICollectionFixture<BrowserFixture>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "browser";
}
