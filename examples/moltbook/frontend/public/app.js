fetch('/api/posts')
  .then((r) => r.json())
  .then((posts) => {
    const list = document.getElementById('posts');
    for (const post of posts) {
      const item = document.createElement('li');
      item.textContent = post.title;
      list.appendChild(item);
    }
  })
  .catch(() => {});
