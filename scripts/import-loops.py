#!/usr/bin/env python3
"""Import loops between the files of a Rust source tree: prints each group of
files that reach one another through `crate::`/`super::` paths (Tarjan's
strongly connected components). Usage: scripts/import-loops.py DIR [DIR...];
exits 1 when any tree has a loop (test.sh keeps the layering free of them)."""
import os, re, sys
def loops_in(root):
  files={}
  for dp,dn,fn in os.walk(root):
      for f in fn:
          if f.endswith('.rs'):
              p=os.path.join(dp,f); rel=os.path.relpath(p,root)
              files[rel]=open(p).read()
  def modpath(rel):
      parts=rel[:-3].split('/')
      if parts[-1]=='mod': parts=parts[:-1]
      if parts==['lib'] or parts==['main']: return []
      return parts
  mods={tuple(modpath(r)):r for r in files}
  def resolve(path):
      # longest prefix that is a module file
      for k in range(len(path),0,-1):
          t=tuple(path[:k])
          if t in mods: return mods[t]
      return None
  edges={r:set() for r in files}
  for rel,text in files.items():
      code='\n'.join(l.split('//')[0] for l in text.split('\n'))
      me=modpath(rel)
      for m in re.finditer(r'\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)', code):
          t=resolve(m.group(1).split('::'))
          if t and t!=rel: edges[rel].add(t)
      base=me[:-1] if not rel.endswith('mod.rs') else me[:-1]
      for m in re.finditer(r'\bsuper::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)', code):
          parent=me[:-1]
          t=resolve(parent+m.group(1).split('::'))
          if t and t!=rel: edges[rel].add(t)
      # `use super::*` in a child of mod.rs pulls the parent
  # Tarjan SCC
  idx={};low={};st=[];on=set();sccs=[];i=[0]
  import sys
  sys.setrecursionlimit(10000)
  def sc(v):
      idx[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
      for w in edges[v]:
          if w not in idx: sc(w);low[v]=min(low[v],low[w])
          elif w in on: low[v]=min(low[v],idx[w])
      if low[v]==idx[v]:
          c=[]
          while True:
              w=st.pop();on.discard(w);c.append(w)
              if w==v:break
          if len(c)>1: sccs.append(sorted(c))
  for v in files:
      if v not in idx: sc(v)
  for c in sccs: print(len(c), ' '.join(c))
  print(root, 'loops (strongly connected groups of files):',len(sccs))
  return len(sccs)

sys.exit(1 if sum(loops_in(d) for d in sys.argv[1:]) else 0)
