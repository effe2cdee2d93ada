namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>The tests that share one service process.</summary>
[CollectionDefinition(Name)]
public sealed class SharedServerGroup : ICollectionFixture<SharedServer>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "shared server";
}
